#!/usr/bin/env python
"""Wall time of the local engine against `--engine ray` on the same records, and whether they agree.

Each run is the whole command's work (model load included): the local engine in a fresh
process, then a local Ray (started once, its start-up timed separately) with 1 actor x all CPUs
and with one actor per CPU x 1 thread. Every run writes its own score file; the script reports the
largest score difference against the local engine and whether the rankings are identical.

    python scripts/benchmark_ray.py --records ../shared/datasets/em/secure.jsonl --n 2000 -o ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saefilter.inputs.records import Record, read_lines


def scores_by_line(path: Path) -> dict[int, tuple[float, int]]:
    rows = (json.loads(line) for line in path.read_text().splitlines())
    return {row["line"]: (row["score"], row["rank"]) for row in rows}


def compare(path: Path, reference: Path) -> dict:
    ours, theirs = scores_by_line(path), scores_by_line(reference)
    assert ours.keys() == theirs.keys(), "the engines scored different lines"
    return {
        "max_abs_score_diff": max(abs(ours[k][0] - theirs[k][0]) for k in ours),
        "identical_ranks": all(ours[k][1] == theirs[k][1] for k in ours),
    }


def run_local(data: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saefilter.cli", "score", str(data), "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="saefilter-ray-"))
    data = folder / "records.jsonl"
    lines = [item.raw for item in read_lines(args.records) if isinstance(item, Record)][: args.n]
    data.write_bytes(b"".join(line + b"\n" for line in lines))
    cpus = os.cpu_count() or 1

    results: dict = {"records": len(lines), "cpus": cpus, "runs": {}}
    local_out = folder / "local.scores.jsonl"
    results["runs"]["local engine"] = {"seconds": run_local(data, local_out)}
    print(json.dumps(results, indent=2), flush=True)

    import ray

    from saefilter.runs.ray_engine import RayOptions, score_with_ray, start_ray
    from saefilter.scoring.config import ScoreConfig

    started = time.perf_counter()
    start_ray(None)
    results["ray_start_seconds"] = time.perf_counter() - started
    for actors in (1, cpus):
        out = folder / f"ray{actors}.scores.jsonl"
        started = time.perf_counter()
        score_with_ray(str(data), ScoreConfig(), out, RayOptions(actors=actors))
        seconds = time.perf_counter() - started
        threads = max(1, cpus // actors)
        results["runs"][f"ray engine, {actors} actor(s) x {threads} thread(s)"] = {"seconds": seconds, **compare(out, local_out)}
        print(json.dumps(results, indent=2), flush=True)
    ray.shutdown()
    local = results["runs"]["local engine"]["seconds"]
    for run in results["runs"].values():
        run["ratio_to_local"] = run["seconds"] / local
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
