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
process, and prints end-to-end speed-ups against the first. An entry may add "+compile"
(torch.compile of the blocks the score reads, which saefilter does not do: measured 2026-12-07 and
not adopted, BENCHMARKS.md "Speed"; its first pass, compiling included, is reported apart). With
--profile it also says where the time of one end-to-end run goes: reading and tokenising, the
forward pass split by operator kind (matrix products, attention, the rest), the SAE encoder with
the proximity product, and building and writing the rows.

--whole-process N times `saefilter score` as a user runs it, on the first N records, a fresh
process per run (imports, model load, scoring, writing), the dtypes alternating, median of
--repeats (plain dtypes only).

    python scripts/benchmark_speed.py --records data.jsonl --n 200 [--model ... --sae ... --features ...]
    python scripts/benchmark_speed.py --records data.jsonl --whole-process 400 --skip-forward --skip-rss
    python scripts/benchmark_speed.py --records data.jsonl --dtypes float32,bfloat16,bfloat16+compile
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
from common import time_it

from saefilter.inputs.records import Record, read_lines
from saefilter.model.activations import length_batches, pad_batch
from saefilter.model.layers import decoder_layers, residual_at
from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Prepared, Scorer


def write_subset(records: Path, n: int) -> Path:
    """The first n well-formed records of a file, in a file of their own."""
    subset = Path(tempfile.mkdtemp()) / "records.jsonl"
    lines = [item.raw for item in read_lines(records) if isinstance(item, Record)][:n]
    subset.write_bytes(b"".join(line + b"\n" for line in lines))
    return subset


def variant(entry: str) -> tuple[str, bool]:
    """'bfloat16+compile' -> ('bfloat16', True)."""
    dtype, _, extra = entry.partition("+")
    if extra not in ("", "compile"):
        raise SystemExit(f"--dtypes: unknown variant '{entry}' (a dtype, optionally +compile)")
    return dtype, extra == "compile"


def compile_blocks(model, through_layer: int) -> None:
    """torch.compile (inductor, dynamic shapes) of decoder blocks 0..through_layer, in place; each
    block compiles apart (its layer index is a constant), so dynamo's recompile limit is raised."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 4 * (through_layer + 1))
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 16 * (through_layer + 1))
    for block in decoder_layers(model)[: through_layer + 1]:
        block.compile(dynamic=True)


def forward_benchmarks(args, entry: str) -> dict:
    dtype, compiled = variant(entry)
    config = ScoreConfig(model=args.model, sae=args.sae, features=args.features, batch_size=args.batch_size, dtype=dtype)
    scorer = Scorer.load(config)
    if compiled:
        compile_blocks(scorer.lm.model, scorer.method.sae.hook.layer)
    subset = write_subset(args.records, args.n)
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

    started = time.perf_counter()
    truncated()  # warm-up (compiles a compiled variant)
    first_pass = time.perf_counter() - started
    end_to_end()
    results = {name: time_it(fn, args.repeats) for name, fn in
               (("bare truncated forward", truncated), ("full forward + LM head", full), ("saefilter score end to end", end_to_end))}
    profile = where_time_goes(scorer, subset, padded, results["saefilter score end to end"]) if args.profile else None
    return {
        "records": len(samples), "tokens": n_tokens, "batches": len(batches), "hook": hook.name, "profile": profile,
        "compile": compiled, "first_truncated_pass_s": first_pass,
        "padding_share": 1 - n_tokens / computed,
        "layers_run": hook.layer + 1, "layers_total": len(decoder_layers(model)),
        "seconds": results,
        "samples_per_s": {k: len(samples) / v for k, v in results.items()},
        "tokens_per_s": {k: n_tokens / v for k, v in results.items()},
        "ratio_end_to_end_over_truncated": results["saefilter score end to end"] / results["bare truncated forward"],
        "ratio_full_over_truncated": results["full forward + LM head"] / results["bare truncated forward"],
        "flop_estimate": flop_estimate(model, hook.layer + 1, n_tokens / results["bare truncated forward"], model.dtype),
    }


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION_OPS = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
                 "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention")


def where_time_goes(scorer: Scorer, subset: Path, padded: list, end_to_end: float) -> dict:
    """Seconds of each stage of one end-to-end run, measured apart on the same records and batches;
    the forward pass split by operator kind (self CPU time, torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    prepared = [p for p in map(scorer.prepare, read_lines(subset)) if isinstance(p, Prepared)]
    prepare = time.perf_counter() - started
    model, hook, sae = scorer.lm.model, scorer.method.sae.hook, scorer.encoder.sae.sae
    proximity = torch.from_numpy(scorer.method.proximity.proximity)
    with torch.inference_mode():
        residuals = [residual_at(model, hook, ids, mask)[scored] for ids, mask, scored in padded]
        started = time.perf_counter()
        for resid in residuals:
            sae.encode(resid.to(scorer.encoder.sae_dtype)).float() @ proximity
        sae_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for ids, mask, _ in padded:
                residual_at(model, hook, ids, mask)
        forward = time.perf_counter() - started
    self_us = {event.key: event.self_cpu_time_total for event in prof.key_averages()}
    total_us = sum(self_us.values())
    matmul = sum(v for k, v in self_us.items() if k in MATMUL_OPS) / total_us
    attention = sum(v for k, v in self_us.items() if k in ATTENTION_OPS) / total_us
    started = time.perf_counter()
    scorer.score_rows(prepared)
    rows = time.perf_counter() - started
    top_ops = sorted(self_us.items(), key=lambda kv: -kv[1])[:8]
    return {"read_render_tokenise_s": prepare, "sae_encode_and_proximity_s": sae_seconds,
            "forward_profiled_s": forward, "forward_share": {"matmul": matmul, "attention": attention,
                                                             "other": 1 - matmul - attention},
            "forward_top_ops": {k: v / total_us for k, v in top_ops},
            "score_rows_s": rows, "end_to_end_s": end_to_end,
            "rest_of_end_to_end_s": end_to_end - prepare - rows}


def whole_process(args, dtypes: list[str]) -> dict:
    """`saefilter score` in a fresh process per run, the dtypes alternating; real tokens from the
    score file's n_tokens."""
    import shutil

    subset = write_subset(args.records, args.whole_process)
    command = shutil.which("saefilter") or str(Path(sys.executable).parent / "saefilter")
    extra = ["--model", args.model, "--sae", args.sae, "--features", args.features, "--batch-size", str(args.batch_size)]
    times: dict[str, list[float]] = {dtype: [] for dtype in dtypes}

    def score(dtype: str, out: Path) -> float:
        started = time.perf_counter()
        subprocess.run([command, "score", str(subset), "--dtype", dtype, "-o", str(out), *extra], check=True,
                       capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return time.perf_counter() - started

    score(dtypes[-1], subset.with_name("warm_up.jsonl"))  # fills the caches (a GGUF's conversion); not kept
    for repeat in range(args.repeats):
        for dtype in dtypes:
            times[dtype].append(score(dtype, subset.with_name(f"scores_{dtype}_{repeat}.jsonl")))
    warm_up = subset.with_name("warm_up.jsonl").read_text().splitlines()
    tokens = sum(json.loads(line)["n_tokens"] for line in warm_up)  # the same records in every run
    seconds = {dtype: statistics.median(t) for dtype, t in times.items()}
    return {"records": args.whole_process, "tokens": tokens, "runs": times, "median_s": seconds,
            "tokens_per_s": {dtype: tokens / s for dtype, s in seconds.items()},
            "speedup_over_" + dtypes[0]: {dtype: seconds[dtypes[0]] / seconds[dtype] for dtype in dtypes[1:]}}


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
from saefilter.scoring.config import ScoreConfig
from saefilter.runs.pipeline import score_file
model, sae, features, data = sys.argv[1:5]
score_file(Path(data), ScoreConfig(model=model, sae=sae, features=features))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def rss_benchmarks(counts: list[int]) -> dict:
    from saefilter.testing import ANSWERS, chat, random_sae, tiny_model, write_features

    folder = Path(tempfile.mkdtemp())
    tiny_model(folder / "model")
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
    parser.add_argument("--profile", action="store_true", help="also say where the time of one end-to-end run goes")
    parser.add_argument("--whole-process", type=int, default=0, metavar="N",
                        help="time `saefilter score` as whole processes on the first N records")
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
    if args.whole_process:
        if args.records is None:
            parser.error("--records is needed for --whole-process")
        # `saefilter score` as shipped: the plain dtypes of --dtypes
        report["whole_process"] = whole_process(args, [d for d in args.dtypes.split(",") if not variant(d)[1]])
    if not args.skip_rss:
        report["peak_rss"] = rss_benchmarks([int(c) for c in args.rss_counts.split(",")])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
