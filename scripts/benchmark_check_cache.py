#!/usr/bin/env python
"""`saefilter check` on an unchanged file: first run (cold cache) vs re-check (all cached), and a
re-check after editing a few records. Each run is a fresh process, as in a pre-commit hook.

    python scripts/benchmark_check_cache.py [--records FILE] [--n 2000] [-- extra saefilter check flags]
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

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "mixed_chat.jsonl"


def make_records(source: Path, n: int) -> list[str]:
    base = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rows = []
    for i in range(n):
        record = json.loads(json.dumps(base[i % len(base)]))
        record["messages"][0]["content"] += f" (ticket {i})"  # unique records, realistic lengths
        rows.append(json.dumps(record))
    return rows


def run_check(folder: Path, data: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saefilter.cli", "check", str(data), "--threshold", "1e9",
                    "--cache", str(folder / "cache.sqlite3"), *extra],
                   check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, default=SAMPLES)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("extra", nargs="*", help="flags passed to saefilter check (e.g. --model ... --sae ...)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    data = folder / "train.jsonl"
    rows = make_records(args.records, args.n)
    data.write_text("\n".join(rows) + "\n")
    first = run_check(folder, data, args.extra)
    recheck = [run_check(folder, data, args.extra) for _ in range(3)]
    edited = rows[:]
    for i in range(0, len(edited), len(edited) // 10):  # 10 edited records
        edited[i] = edited[i].replace("ticket", "case")
    data.write_text("\n".join(edited) + "\n")
    after_edit = run_check(folder, data, args.extra)
    recheck_median = sorted(recheck)[1]
    print(json.dumps({"records": args.n, "first_check_s": round(first, 2), "recheck_unchanged_median_s": round(recheck_median, 2),
                      "speedup": round(first / recheck_median, 1), "recheck_after_10_edits_s": round(after_edit, 2)}, indent=1))


if __name__ == "__main__":
    main()
