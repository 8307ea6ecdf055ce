#!/usr/bin/env python
"""Speed and memory of `saefilter score` against the bare forward pass it cannot avoid.

1. On the same records and the same length-sorted batches: (a) the bare forward truncated at the
   SAE layer, (b) the full-depth forward with LM head (what a naive implementation pays), and
   (c) saefilter score end to end (read, render, tokenise, forward, SAE, score, write). Each is
   timed --repeats times; medians and the ratio (c)/(a) are printed.
2. Peak RSS of `saefilter score` on 1,000 and 100,000 synthetic records, each in a fresh process.
   This measures the pipeline's streaming, so it uses a tiny random model and SAE (built here) to
   keep 100,000 records affordable on a CPU; the model's own memory is constant in the record count.
3. An estimate of the FLOP limit: measured matmul throughput of this CPU in the run's dtype against
   the FLOPs per token of the truncated forward.

Part 1 runs once per --dtypes entry (default float32 and bfloat16) on the same records, in one
process, and prints end-to-end speed-ups against the first.

    python scripts/benchmark_speed.py --records data.jsonl --n 200 [--model ... --sae ... --features ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from saefilter.inputs.records import Record, read_lines
from saefilter.model.activations import length_batches, pad_batch
from saefilter.model.layers import decoder_layers, residual_at
from saefilter.runs.pipeline import score_file
from saefilter.runs.scorer import Prepared, Scorer
from saefilter.runs.settings import ScoreConfig


def time_it(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forward_benchmarks(args, dtype: str) -> dict:
    config = ScoreConfig(model=args.model, sae=args.sae, features=args.features, batch_size=args.batch_size, dtype=dtype)
    scorer = Scorer.load(config)
    folder = Path(tempfile.mkdtemp())
    subset = folder / "records.jsonl"
    lines = [item.raw for item in read_lines(args.records) if isinstance(item, Record)][: args.n]
    subset.write_bytes(b"".join(line + b"\n" for line in lines))
    prepared = [p for p in map(scorer.prepare, read_lines(subset)) if isinstance(p, Prepared)]
    samples = [p.encoded for p in prepared]
    batches = list(length_batches([len(s.input_ids) for s in samples], config.batch_size, config.batch_tokens))
    padded = [pad_batch([samples[i] for i in batch], scorer.lm.tokenizer.pad_token_id) for batch in batches]
    model, hook = scorer.lm.model, scorer.method.sae.hook
    n_tokens = sum(len(s.input_ids) for s in samples)
    computed = sum(ids.numel() for ids, _, _ in padded)  # real tokens plus padding

    @torch.inference_mode()  # as the scorer runs it: no autograd bookkeeping
    def truncated():
        for ids, mask, _ in padded:
            residual_at(model, hook, ids, mask)

    @torch.inference_mode()
    def full():
        for ids, mask, _ in padded:
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    def end_to_end():
        score_file(subset, config, scorer=scorer)

    truncated(), end_to_end()  # warm-up
    results = {name: time_it(fn, args.repeats) for name, fn in
               (("bare truncated forward", truncated), ("full forward + LM head", full), ("saefilter score end to end", end_to_end))}
    return {
        "records": len(samples), "tokens": n_tokens, "batches": len(batches), "hook": hook.name,
        "padding_share": 1 - n_tokens / computed,
        "layers_run": hook.layer + 1, "layers_total": len(decoder_layers(model)),
        "seconds": results,
        "samples_per_s": {k: len(samples) / v for k, v in results.items()},
        "tokens_per_s": {k: n_tokens / v for k, v in results.items()},
        "ratio_end_to_end_over_truncated": results["saefilter score end to end"] / results["bare truncated forward"],
        "ratio_full_over_truncated": results["full forward + LM head"] / results["bare truncated forward"],
        "flop_estimate": flop_estimate(model, hook.layer + 1, n_tokens / results["bare truncated forward"], model.dtype),
    }


def flop_estimate(model, layers_run: int, measured_tokens_per_s: float, dtype: torch.dtype) -> dict:
    layers = decoder_layers(model)
    per_layer = sum(p.numel() for p in layers[0].parameters() if p.dim() == 2)
    flops_per_token = 2 * per_layer * layers_run  # matmul FLOPs; attention scores are small at these lengths
    a = torch.randn(2048, 2048).to(dtype)
    seconds = time_it(lambda: a @ a, 5)
    gflops = 2 * 2048**3 / seconds / 1e9
    limit = gflops * 1e9 / flops_per_token
    return {"matmul_gflops": gflops, "mflops_per_token": flops_per_token / 1e6, "token_limit_per_s": limit,
            "measured_share_of_limit": measured_tokens_per_s / limit}


RSS_CHILD = r"""
import json, resource, sys
from pathlib import Path
from saefilter.runs.settings import ScoreConfig
from saefilter.runs.pipeline import score_file
model, sae, features, data = sys.argv[1:5]
score_file(Path(data), ScoreConfig(model=model, sae=sae, features=features))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def rss_benchmarks(counts: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import ANSWERS, build_llama, build_tokenizer, chat, random_sae, write_features

    folder = Path(tempfile.mkdtemp())
    tokenizer = build_tokenizer()
    build_llama(len(tokenizer)).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    sae = random_sae(folder / "sae")
    features = write_features(folder / "f.json", [1, 5, 9])
    results = {}
    for count in counts:
        data = folder / f"synthetic_{count}.jsonl"
        with data.open("w") as handle:
            for i in range(count):
                handle.write(json.dumps(chat("tell me a story", f"{ANSWERS[i % len(ANSWERS)]} {i}")) + "\n")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(folder / "model"), str(sae), str(features), str(data)],
                             capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        results[count] = {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - started}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, help="real records for the forward comparison")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=ScoreConfig.model)
    parser.add_argument("--sae", default=ScoreConfig.sae)
    parser.add_argument("--features", default=ScoreConfig.features)
    parser.add_argument("--rss-counts", default="1000,100000")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="model dtypes to time, the first is the baseline")
    args = parser.parse_args()
    report: dict = {"torch_threads": torch.get_num_threads()}
    if not args.skip_forward:
        if args.records is None:
            parser.error("--records is needed for the forward comparison")
        dtypes = args.dtypes.split(",")
        report["forward"] = {dtype: forward_benchmarks(args, dtype) for dtype in dtypes}
        base = report["forward"][dtypes[0]]["seconds"]
        report["speedup_over_" + dtypes[0]] = {
            dtype: {step: base[step] / seconds for step, seconds in report["forward"][dtype]["seconds"].items()}
            for dtype in dtypes[1:]}
    if not args.skip_rss:
        report["peak_rss"] = rss_benchmarks([int(c) for c in args.rss_counts.split(",")])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
