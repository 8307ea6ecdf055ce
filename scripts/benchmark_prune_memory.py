#!/usr/bin/env python
"""Peak memory of `prune` and `report` as the score file grows: they should hold a few numbers per
row, not every row.

Writes a synthetic dataset and a matching score file (ids, ranks and the explanation fields that
`score` writes: 5 top features, 5 top tokens) for each size, then runs prune (top 10%) and report in
fresh processes and reads their peak RSS. No model is involved: this measures the post-processing.

    python scripts/benchmark_prune_memory.py --sizes 10000,200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from saefilter.files import json_line
from saefilter.inputs.records import line_id
from saefilter.outputs.score_files import ranks_and_percentiles

STEP = """
import resource, sys
from pathlib import Path
data, scores, out = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
if sys.argv[1] == "prune":
    from saefilter.outputs.prune import Cutoff, prune_dataset
    prune_dataset(data, scores, Cutoff(fraction=0.1), out_dir=out)
else:
    from saefilter.outputs.report import write_report
    write_report(scores, out / "report.html", data_path=data)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_synthetic(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    scores = rng.gamma(2.0, 0.01, n)
    ranks, percentiles = ranks_and_percentiles(scores)
    data, score_file = folder / "data.jsonl", folder / "data.scores.jsonl"
    with data.open("wb") as data_out, score_file.open("w") as score_out:
        for i in range(n):
            record = {"messages": [{"role": "user", "content": f"question {i} about the weather"},
                                   {"role": "assistant", "content": f"answer {i}: " + "it will be sunny and mild. " * 8}]}
            raw = json.dumps(record).encode()
            data_out.write(raw + b"\n")
            features = [{"index": int(j), "label": f"feature {j}", "contribution": float(c)}
                        for j, c in zip(rng.integers(0, 4096, 5), rng.random(5) / 100, strict=True)]
            tokens = [{"position": 40 + j, "token": f" word{j}", "mass": float(m)} for j, m in zip(range(5), rng.random(5) / 100, strict=True)]
            score_out.write(json_line({"line": i + 1, "id": line_id(raw), "score": float(scores[i]), "n_tokens": 96, "n_scored": 80,
                                       "truncated": False, "top_features": features, "top_tokens": tokens,
                                       "rank": int(ranks[i]), "percentile": float(percentiles[i])}))
    return data, score_file


def measure(step: str, data: Path, scores: Path, out: Path) -> tuple[float, float]:
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", STEP, step, str(data), str(scores), str(out)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,200000")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / str(n)
            folder.mkdir()
            data, scores = write_synthetic(folder, n)
            for step in ("prune", "report"):
                rss, seconds = measure(step, data, scores, folder / step)
                rows.append((n, step, rss, seconds, scores.stat().st_size / 2**20))
    print("| rows | step | peak RSS (MB) | wall (s) | score file (MB) |\n|---|---|---|---|---|")
    for n, step, rss, seconds, size in rows:
        print(f"| {n:,} | {step} | {rss:.1f} | {seconds:.1f} | {size:.0f} |")


if __name__ == "__main__":
    main()
