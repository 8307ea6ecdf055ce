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
import os
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, time
variant, d_sae, d_model, n_harmful, repeats = sys.argv[1], *map(int, sys.argv[2:6])
busy = lambda: None
if not variant.startswith("faiss only"):
    import torch
    big = torch.ones(1024, 1024)
    busy = lambda: big @ big  # torch's OpenMP pool has just been busy, as after a model forward
import numpy as np
from saefilter.sae.geometry import faiss_single_thread, harmful_index, unit_rows
rng = np.random.default_rng(0)
decoder = unit_rows(rng.normal(size=(d_sae, d_model)).astype(np.float32))
index = harmful_index(decoder[:n_harmful])
times = []
for _ in range(repeats):
    busy()
    started = time.perf_counter()
    if "single" in variant:
        with faiss_single_thread():
            index.search(decoder, 5)
    else:
        index.search(decoder, 5)
    times.append(time.perf_counter() - started)
print(json.dumps({"variant": variant, "median_s": statistics.median(times)}))
"""

VARIANTS = (
    ("faiss only", {}),
    ("faiss only, single thread", {}),
    ("torch + default faiss threads", {}),
    ("torch + default faiss threads, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("torch + single-thread faiss (saefilter)", {}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--d-model", type=int, default=2304)
    parser.add_argument("--n-harmful", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    results = []
    for variant, env in VARIANTS:
        cmd = [sys.executable, "-c", CHILD, variant, *map(str, (args.d_sae, args.d_model, args.n_harmful, args.repeats))]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env})
        results.append(json.loads(run.stdout))
    base = results[0]["median_s"]
    print("| variant | median search (s) | vs faiss only |\n|---|---|---|")
    for row in results:
        print(f"| {row['variant']} | {row['median_s']:.4f} | {row['median_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
