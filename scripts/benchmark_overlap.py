#!/usr/bin/env python
"""How long the decontamination check takes: a 10,000-row evaluation file against the default's
provenance, as `saefilter eval` runs it (read the file, fingerprint every row, look every exact hash
and 13-gram up in every source). Medians of --repeats runs in one process.

    python scripts/benchmark_overlap.py                       # 10,000 Alpaca and EM rows, needs ../shared/datasets
    python scripts/benchmark_overlap.py --rows 10000 --repeats 5 -o benchmarks/overlap/default.json

The file mixes 5,000 Alpaca chats and 5,000 rows of the emergent-misalignment code sets (long
answers: the most 13-grams per row a user is likely to check).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from common import report

from saefilter.features.feature_set import load_feature_set
from saefilter.features.provenance import check_overlap
from saefilter.inputs.reference import read_reference
from saefilter.scoring.config import resolve_features_path

ROOT = Path(__file__).resolve().parents[1]


def evaluation_file(shared: Path, rows: int, out: Path) -> Path:
    alpaca = json.loads((shared / "benign/alpaca_5000.json").read_text(encoding="utf-8"))
    chats = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
             for r in alpaca]
    with (shared / "em/secure.jsonl").open(encoding="utf-8") as handle:
        chats += [json.loads(line) for line in handle]
    with out.open("w", encoding="utf-8") as handle:
        for row in (chats * (rows // len(chats) + 1))[:rows]:
            handle.write(json.dumps(row) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", "-o", type=Path, default=None)
    args = parser.parse_args()
    if not (args.shared / "README.md").exists():
        raise SystemExit(f"reference datasets not found at {args.shared}: this benchmark needs ../shared/datasets")
    provenance = load_feature_set(resolve_features_path("embedded")).provenance
    with tempfile.TemporaryDirectory() as folder:
        path = evaluation_file(args.shared, args.rows, Path(folder) / "eval.jsonl")
        seconds, found = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            overlap = check_overlap(provenance, list(read_reference(path)))
            seconds.append(time.perf_counter() - start)
            found = overlap
    assert found is not None
    result = {"rows": args.rows, "repeats": args.repeats, "median_s": round(statistics.median(seconds), 3),
              "all_s": [round(s, 3) for s in seconds], "overlapping_rows": len(found.rows), "by_role": found.counts(),
              "sources": len(provenance.sources), "hashes": sum(len(s.exact) + len(s.ngrams) for s in provenance.sources.values()),
              "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"}
    report(result, args.output)


if __name__ == "__main__":
    main()
