#!/usr/bin/env python
"""Scoring speed on a GPU (or any device) without the weights: each shipped model in its real
configuration (scripts/device/*.config.json, copied from the converted GGUFs) with random weights,
run through saefilter's own batch path (length-sorted batches, right padding, the forward pass
truncated at the SAE's layer, the scored positions through a TopK SAE of the shipped SAE's shape,
the proximity product) in float32 and bfloat16 at several batch sizes. Speed does not depend on the
weight values, so random weights time what the real ones would; scores mean nothing here.

Needs torch and transformers only (no sae-lens, no FAISS, no tokenizer), so it runs on a machine
that reaches no package registry. Token counts are real tokens, never padding; lengths are drawn
from a fixed seed, uniformly between --min-len and --max-len.

    python scripts/device_speed.py --device cuda -o speed.json
    python scripts/device_speed.py --device cpu --models smollm2 --records 16 --batch-sizes 4  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from saefilter.inputs.render import EncodedSample
from saefilter.model.activations import run_in_batches
from saefilter.model.hooks import parse_hook_name
from saefilter.model.loading import LoadedModel
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.loading import LoadedSAE

HERE = Path(__file__).resolve().parent
DEFAULTS = HERE.parent / "saefilter" / "defaults"
MODELS = {  # name: (config, the shipped SAE's cfg.json)
    "smollm2": (HERE / "device" / "smollm2-135m-instruct.config.json", DEFAULTS / "sae" / "cfg.json"),
    "qwen2.5-coder": (HERE / "device" / "qwen2.5-coder-1.5b-instruct.config.json",
                      DEFAULTS / "qwen2.5-coder-1.5b-instruct" / "sae" / "cfg.json"),
}


class RandomTopKSAE(torch.nn.Module):
    """A TopK SAE of the shipped SAE's shape, random weights: the encoder's cost, not its values."""

    def __init__(self, d_in: int, d_sae: int, k: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.k = k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)


@dataclass
class Setup:
    encoder: FeatureEncoder
    proximity: torch.Tensor
    flops_per_token: float


def build(name: str, dtype: str, device: str, layers: int | None = None) -> Setup:
    from transformers import AutoConfig, AutoModelForCausalLM

    config_path, sae_cfg_path = MODELS[name]
    config = AutoConfig.from_pretrained(config_path)
    if layers is not None:  # a smoke run: fewer layers
        config.num_hidden_layers = layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).eval().to(device)
    sae_cfg = json.loads(sae_cfg_path.read_text())
    hook = parse_hook_name(sae_cfg["metadata"]["hook_name"])
    if layers is not None:
        hook = type(hook)(min(hook.layer, layers - 1), hook.position)
    sae = RandomTopKSAE(sae_cfg["d_in"], sae_cfg["d_sae"], sae_cfg["k"]).to(device)
    lm = LoadedModel(model, SimpleNamespace(pad_token_id=0), name, device)
    loaded = LoadedSAE(sae, "random", hook, "random")
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters() if p.dim() == 2)
    proximity = torch.rand(sae_cfg["d_sae"], generator=torch.Generator().manual_seed(1))
    return Setup(FeatureEncoder(lm, loaded), proximity, 2.0 * per_layer * (hook.layer + 1))


def samples(n: int, min_len: int, max_len: int, vocab: int) -> list[EncodedSample]:
    """n chats of seeded random length; the last 60% of each is the scored answer."""
    rng = np.random.default_rng(0)
    out = []
    for length in rng.integers(min_len, max_len + 1, size=n):
        ids = rng.integers(10, vocab, size=int(length)).tolist()
        start = int(length * 0.4)
        out.append(EncodedSample(ids, [i >= start for i in range(int(length))], False))
    return out


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_pass(setup: Setup, chats: list[EncodedSample], batch_size: int, batch_tokens: int, device: str,
              repeats: int) -> float:
    """Median seconds of one pass over all chats (residuals, SAE, per-sample reduction, results on the host)."""
    def one_pass() -> None:
        for _ in run_in_batches(chats, lambda s: setup.encoder.summaries(s, setup.proximity, "mean"), batch_size,
                                batch_tokens):
            pass

    one_pass()  # warm-up: kernels chosen, memory pooled
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        one_pass()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_tflops(dtype: str, device: str, size: int) -> float:
    a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    for _ in range(3):
        a @ a
    synchronize(device)
    started = time.perf_counter()
    for _ in range(10):
        a @ a
    synchronize(device)
    return 2 * size**3 * 10 / (time.perf_counter() - started) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="smollm2,qwen2.5-coder")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--batch-tokens", type=int, default=65536, help="most padded tokens per batch")
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--min-len", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=None, help="cut each model to this many layers (smoke runs)")
    parser.add_argument("--output", "-o", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"device": args.device, "torch": torch.__version__,
                              "name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                              "weights": "random, real configurations", "records": args.records,
                              "lengths": [args.min_len, args.max_len], "runs": []}
    for dtype in args.dtypes.split(","):
        size = 8192 if args.device == "cuda" else 1024
        report.setdefault("matmul_tflops", {})[dtype] = matmul_tflops(dtype, args.device, size)
    for name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            setup = build(name, dtype, args.device, args.layers)
            vocab = setup.encoder.lm.model.config.vocab_size
            chats = samples(args.records, args.min_len, args.max_len, vocab)
            tokens = sum(len(c.input_ids) for c in chats)
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                seconds = time_pass(setup, chats, batch_size, args.batch_tokens, args.device, args.repeats)
                run = {"model": name, "dtype": dtype, "batch_size": batch_size, "tokens": tokens, "seconds": seconds,
                       "tokens_per_s": tokens / seconds,
                       "share_of_matmul_limit": tokens / seconds * setup.flops_per_token
                       / (report["matmul_tflops"][dtype] * 1e12)}
                report["runs"].append(run)
                print(f"{name:14} {dtype:9} batch {batch_size:3}: {run['tokens_per_s']:10,.0f} tokens/s "
                      f"({run['share_of_matmul_limit']:.0%} of the matmul limit)", flush=True)
            del setup
            if args.device == "cuda":
                torch.cuda.empty_cache()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
