#!/usr/bin/env python
"""What the pre-commit hook costs a maintainer: whole-process wall times of `saefilter check` on a
200-row file (empty cache, fully cached, one row edited), of `saefilter score` on the same rows, of
a one-row `score` and `prune` and of `saefilter --help`. Medians of --repeats runs, all in one
invocation, so the ratios compare like with like. Pause other jobs first (SIGSTOP): this measures start-up.

    python scripts/benchmark_hook.py                           # 200 rows of em/secure.jsonl (../shared/datasets)
    python scripts/benchmark_hook.py --repeats 5 -o benchmarks/hook/2026-12-07.json
    PYTHONPATH=OLD_WORKTREE python scripts/benchmark_hook.py --quick   # start-up only, another code version

Every edit changes one row's user turn, a different row each time, as a one-line fix would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

ROOT = Path(__file__).resolve().parents[1]


def saefilter(*args: str, cwd: Path) -> float:
    """Seconds one whole `saefilter` process took (it must succeed, or exit 1 for check's findings)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "saefilter"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"saefilter {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def edit_row(path: Path, row: int, n: int) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[row])
    record["messages"][0]["content"] += f" (edit {n})"
    lines[row] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                return line.split(":", 1)[1].strip() + (", avx512_bf16" if "avx512_bf16" in flags else ", no native bfloat16")
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_commit() -> str:
    """The commit of the code measured: PYTHONPATH's worktree where set, else this checkout (+ if edited)."""
    folder = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(ROOT)
    run = lambda *argv: subprocess.run(["git", "-C", folder, *argv], check=False, capture_output=True, text=True).stdout.strip()
    return run("rev-parse", "--short", "HEAD") + ("+" if run("status", "--porcelain", "--untracked-files=no") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="start-up only: leave out the two whole-file runs (empty cache, score)")
    args = parser.parse_args()
    source = args.shared / "em/secure.jsonl"
    if not source.exists():
        raise SystemExit(f"{source}: this benchmark needs ../shared/datasets (the secure-code chats)")
    work = Path(tempfile.mkdtemp())
    with source.open(encoding="utf-8") as handle:
        rows = [next(handle) for _ in range(args.rows)]
    data = work / "data.jsonl"
    data.write_text("".join(rows), encoding="utf-8")
    (work / "one.jsonl").write_text(rows[0], encoding="utf-8")
    cache = work / "cache.sqlite3"
    check = ("check", "data.jsonl", "--threshold", "5", "--cache", str(cache))
    names = ["help", "check_empty_cache", "score", "check_cached", "check_one_row_edited", "score_one_row",
             "prune_one_row"]
    if args.quick:
        names = [name for name in names if name not in ("check_empty_cache", "score")]
    times: dict[str, list[float]] = {name: [] for name in names}
    saefilter("score", "one.jsonl", "--quiet", cwd=work)  # a first run converts the GGUF into the cache
    if args.quick:
        saefilter(*check, cwd=work)  # fills the cache once, untimed
    for n in range(args.repeats):
        times["help"].append(saefilter("--help", cwd=work))
        if not args.quick:
            cache.unlink(missing_ok=True)
            times["check_empty_cache"].append(saefilter(*check, cwd=work))
            times["score"].append(saefilter("score", "data.jsonl", "--quiet", cwd=work))
        times["check_cached"].append(saefilter(*check, cwd=work))
        edit_row(data, (17 * n + 3) % args.rows, n)
        times["check_one_row_edited"].append(saefilter(*check, cwd=work))
        times["score_one_row"].append(saefilter("score", "one.jsonl", "--quiet", cwd=work))
        times["prune_one_row"].append(saefilter("prune", "one.jsonl", "--fraction", "0.5", "--rescore", "--quiet",
                                                "-o", f"pruned{n}", cwd=work))
    shutil.rmtree(work, ignore_errors=True)
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "rows": args.rows, "repeats": args.repeats,
              "commit": code_commit(),
              "median_s": medians, "all_s": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
              "check_empty_over_score": None if args.quick else round(medians["check_empty_cache"] / medians["score"], 3)}
    report(result, args.output)


if __name__ == "__main__":
    main()
