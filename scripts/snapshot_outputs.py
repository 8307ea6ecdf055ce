#!/usr/bin/env python
"""Every output file of `score`, `prune` and `check` on fixed inputs, in float32, written to one
folder: run it before and after a change that must not change behaviour, then compare the folders
(`diff -r BEFORE AFTER`). Timings and absolute paths are left out of the comparison by
normalising them; everything else must be byte-identical.

    python scripts/snapshot_outputs.py artifacts/snapshot/before
    ...change the code...
    python scripts/snapshot_outputs.py artifacts/snapshot/after && diff -r artifacts/snapshot/before artifacts/snapshot/after

`check` runs with --dtype auto (it has no flag), so compare snapshots taken on one machine.
Inputs: every file of data/samples/ (bad_lines.jsonl with --on-error skip) and, where
../shared/datasets exists, the first 200 rows of em/secure.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = re.compile(rb'"(seconds|elapsed_s|started|finished|created|duration_s|tokens_per_s|records_per_s|time)": [^,}\n]+')


def saefilter(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "saefilter.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)


def normalised(folder: Path) -> None:
    """Timings and the folder's own path out of every text file, so two runs compare byte for byte."""
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".txt"}:  # bytes: an input may not be UTF-8
            data = path.read_bytes().replace(str(folder).encode(), b"<out>")
            path.write_bytes(VOLATILE.sub(lambda m: b'"' + m.group(1) + b'": 0', data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    inputs = sorted((ROOT / "data/samples").glob("*.jsonl"))
    for path in inputs:
        shutil.copy(path, out / path.name)
    secure = args.shared / "em/secure.jsonl"
    if secure.exists():
        with secure.open(encoding="utf-8") as handle:
            (out / "em_secure_200.jsonl").write_text("".join(next(handle) for _ in range(200)), encoding="utf-8")
    float32 = ("--dtype", "float32")
    for path in sorted(out.glob("*.jsonl")):
        skip = ("--on-error", "skip") if path.name == "bad_lines.jsonl" else ()
        steps = {"score": ("score", path.name, *float32, *skip, "--quiet"),
                 "prune": ("prune", path.name, "--fraction", "0.25", *float32, *skip, "--quiet"),
                 # check has no --dtype (it runs as score's --dtype auto): compare on one machine
                 "check": ("check", path.name, "--threshold", "0.5", "--cache", "check-cache.sqlite3")}
        for step, argv in steps.items():
            result = saefilter(*argv, cwd=out)
            (out / f"{path.stem}.{step}.stdout.txt").write_text(f"exit {result.returncode}\n{result.stdout}",
                                                                  encoding="utf-8")
    (out / "check-cache.sqlite3").unlink(missing_ok=True)
    normalised(out)
    print(json.dumps(sorted(p.name for p in out.iterdir())))


if __name__ == "__main__":
    main()
