#!/usr/bin/env python
"""Collect residual activations of a model over a corpus and train sae-lens TopK SAEs on them.

One collection pass serves every layer in --layers (the forward stops at the deepest one);
then one SAE is trained per layer with sae-lens's SAETrainer and evaluated on held-out tokens.

    python scripts/train_sae.py --corpus artifacts/data/sae_corpus.jsonl --layers 4,8,12 \
        --tokens 2500000 --out artifacts/sae

Collection resumes: rerun the same command after a stop (or with a larger --tokens) and it goes on
from the last complete chunk. --model takes a named model (`saefilter models`) or a .gguf file.

Outputs: OUT/acts/<hook>.f16 + store.json (float16, large, not committed), OUT/layer_<L>/ (cfg.json,
sae_weights.safetensors, metrics.json), OUT/sweep.json (metrics of every layer).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from saefilter.inputs.reference import read_reference
from saefilter.model.hooks import HookPoint
from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.training import SAETrainingSettings, collect_activations, store_rows, train_topk_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--corpus", type=Path, nargs="+", required=True)
    parser.add_argument("--layers", default="4,8,12", help="comma-separated decoder layers (hook_resid_post)")
    parser.add_argument("--tokens", type=int, default=2_500_000, help="activation tokens to collect")
    parser.add_argument("--max-tokens", type=int, default=256, help="per-sample truncation")
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the collected tokens")
    parser.add_argument("--out", type=Path, default=Path("artifacts/sae"))
    parser.add_argument("--skip-collect", action="store_true", help="train on OUT/acts as it is")
    parser.add_argument("--dtype", default="float32", help="model dtype for collection (float32, bfloat16)")
    parser.add_argument("--outlier-norm-factor", type=float, default=None,
                        help="train and evaluate without rows whose norm exceeds this many times the median (e.g. 10 for Qwen2.5)")
    args = parser.parse_args()

    hooks = [HookPoint(int(layer), "post") for layer in args.layers.split(",")]
    acts_dir = args.out / "acts"
    if not args.skip_collect:
        lm = load_model(args.model, device="auto", dtype=args.dtype)
        conversations = [c for path in args.corpus for c in read_reference(path)]
        started, seen = time.perf_counter(), [0]

        def report(n: int) -> None:
            seen[0] += n
            if seen[0] // 100_000 != (seen[0] - n) // 100_000:
                rate = seen[0] / (time.perf_counter() - started)
                print(f"collected {seen[0]:,} tokens ({rate:,.0f} tokens/s)", flush=True)

        collect_activations(lm, conversations, hooks, acts_dir, args.tokens, args.max_tokens, on_tokens=report)
        print(f"collection took {time.perf_counter() - started:.0f} s", flush=True)
        del lm

    settings = SAETrainingSettings(d_sae=args.d_sae, k=args.k, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                                   outlier_norm_factor=args.outlier_norm_factor)
    sweep = {}
    for hook in hooks:
        started = time.perf_counter()
        metrics = train_topk_sae(store_rows(acts_dir, hook.name), hook, args.out / f"layer_{hook.layer}", settings, args.model)
        sweep[hook.name] = {**asdict(metrics), "train_seconds": round(time.perf_counter() - started)}
        print(hook.name, json.dumps(sweep[hook.name]), flush=True)
        (args.out / "sweep.json").write_text(json.dumps(sweep, indent=1))


if __name__ == "__main__":
    main()
