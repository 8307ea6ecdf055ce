#!/usr/bin/env python
"""FAISS search time with and without torch in the process, and with saefilter's mitigation.

torch and faiss-cpu each ship an OpenMP runtime; with both loaded, FAISS's threads were measured
to spin against torch's. saefilter runs its searches under `faiss_single_thread()`. Each variant
runs in a fresh subprocess; the script prints the median of --repeats timed searches per variant.

    python scripts/benchmark_faiss_omp.py [--d-sae 16384 --d-model 2304 --n-harmful 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, time
variant, d_sae, d_model, n_harmful, repeats = sys.argv[1], *map(int, sys.argv[2:6])
if variant != "faiss only":
    import torch
    torch.ones(256, 256) @ torch.ones(256, 256)  # start torch's thread pool, as a model forward would
import numpy as np
from saefilter.proximity import faiss_single_thread, harmful_index, unit_rows
rng = np.random.default_rng(0)
decoder = unit_rows(rng.normal(size=(d_sae, d_model)).astype(np.float32))
index = harmful_index(decoder[:n_harmful])
times = []
for _ in range(repeats):
    started = time.perf_counter()
    if variant == "torch + single-thread faiss (saefilter)":
        with faiss_single_thread():
            index.search(decoder, 5)
    else:
        index.search(decoder, 5)
    times.append(time.perf_counter() - started)
print(json.dumps({"variant": variant, "median_s": statistics.median(times)}))
"""

VARIANTS = ("faiss only", "torch + default faiss threads", "torch + single-thread faiss (saefilter)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--d-model", type=int, default=2304)
    parser.add_argument("--n-harmful", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = []
    for variant in VARIANTS:
        cmd = [sys.executable, "-c", CHILD, variant, *map(str, (args.d_sae, args.d_model, args.n_harmful, args.repeats))]
        results.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    base = results[0]["median_s"]
    print(f"| variant | median search (s) | vs faiss only |\n|---|---|---|")
    for row in results:
        print(f"| {row['variant']} | {row['median_s']:.4f} | {row['median_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
