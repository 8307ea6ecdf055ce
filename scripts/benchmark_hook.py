#!/usr/bin/env python
"""What the pre-commit hook costs a maintainer: whole-process wall times of `saefilter check` on a
200-row file (empty cache, fully cached, one row edited), of `saefilter score` on the same rows, of
a one-row `score` and `prune` and of `saefilter --help`. Medians of --repeats runs, all in one
invocation, so the ratios compare like with like. Pause other jobs first (SIGSTOP): this measures start-up.

    python scripts/benchmark_hook.py                           # 200 rows of em/secure.jsonl (../shared/datasets)
    python scripts/benchmark_hook.py --repeats 5 -o benchmarks/hook/2026-12-07.json
    python scripts/benchmark_hook.py --quick --against OLD_WORKTREE   # start-up, this code and another, interleaved

With --against, every step runs once for each code version in turn (the other version's worktree on
PYTHONPATH, its own copy of the data and score cache), so a machine that slows down or speeds up
during the run weighs on both alike. Every edit changes one row's user turn, a different row each
time, as a one-line fix would.
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


def saefilter(*args: str, cwd: Path, code: Path | None = None) -> float:
    """Seconds one whole `saefilter` process took (it must succeed, or exit 1 for check's findings);
    `code`: another version's source folder, put first on PYTHONPATH."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
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


def code_commit(folder: str | None = None) -> str:
    """The commit of the code measured (`folder`, else PYTHONPATH's worktree where set, else this
    checkout), + if edited."""
    folder = folder or os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(ROOT)
    run = lambda *argv: subprocess.run(["git", "-C", folder, *argv], check=False, capture_output=True, text=True).stdout.strip()
    return run("rev-parse", "--short", "HEAD") + ("+" if run("status", "--porcelain", "--untracked-files=no") else "")


STEPS = ["help", "check_empty_cache", "score", "check_cached", "check_one_row_edited", "score_one_row",
         "prune_one_row"]


class Version:
    """One code version's working folder (data, one-row file, score cache) and its timings."""

    def __init__(self, rows: list[str], root: Path, code: Path | None, steps: list[str]):
        self.code, self.work = code, root / ("now" if code is None else "against")
        self.work.mkdir()
        self.data = self.work / "data.jsonl"
        self.data.write_text("".join(rows), encoding="utf-8")
        (self.work / "one.jsonl").write_text(rows[0], encoding="utf-8")
        self.cache = self.work / "cache.sqlite3"
        self.times: dict[str, list[float]] = {name: [] for name in steps}

    def run(self, *args: str) -> float:
        return saefilter(*args, cwd=self.work, code=self.code)

    @property
    def check(self) -> tuple[str, ...]:
        return ("check", "data.jsonl", "--threshold", "5", "--cache", str(self.cache))

    def warm_up(self, quick: bool) -> None:
        self.run("score", "one.jsonl", "--quiet")  # a first run converts the GGUF into the cache
        if quick:
            self.run(*self.check)  # fills the score cache once, untimed

    def repeat(self, n: int, rows: int, quick: bool) -> None:
        self.times["help"].append(self.run("--help"))
        if not quick:
            self.cache.unlink(missing_ok=True)
            self.times["check_empty_cache"].append(self.run(*self.check))
            self.times["score"].append(self.run("score", "data.jsonl", "--quiet"))
        self.times["check_cached"].append(self.run(*self.check))
        edit_row(self.data, (17 * n + 3) % rows, n)
        self.times["check_one_row_edited"].append(self.run(*self.check))
        self.times["score_one_row"].append(self.run("score", "one.jsonl", "--quiet"))
        self.times["prune_one_row"].append(self.run("prune", "one.jsonl", "--fraction", "0.5", "--rescore", "--quiet",
                                                    "-o", f"pruned{n}"))

    def summary(self) -> dict:
        return {"commit": code_commit(None if self.code is None else str(self.code)),
                "median_s": {name: round(statistics.median(v), 2) for name, v in self.times.items()},
                "all_s": {name: [round(x, 2) for x in v] for name, v in self.times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="start-up only: leave out the two whole-file runs (empty cache, score)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another code version's source folder (a worktree), timed interleaved with this one")
    args = parser.parse_args()
    source = args.shared / "em/secure.jsonl"
    if not source.exists():
        raise SystemExit(f"{source}: this benchmark needs ../shared/datasets (the secure-code chats)")
    with source.open(encoding="utf-8") as handle:
        rows = [next(handle) for _ in range(args.rows)]
    steps = [name for name in STEPS if not (args.quick and name in ("check_empty_cache", "score"))]
    work = Path(tempfile.mkdtemp())
    versions = [Version(rows, work, None, steps)]
    if args.against is not None:
        versions.append(Version(rows, work, args.against.resolve(), steps))
    for version in versions:
        version.warm_up(args.quick)
    for n in range(args.repeats):
        for version in versions if n % 2 == 0 else versions[::-1]:
            version.repeat(n, args.rows, args.quick)
    shutil.rmtree(work, ignore_errors=True)
    now = versions[0].summary()
    medians = now["median_s"]
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "rows": args.rows, "repeats": args.repeats, **now,
              "check_empty_over_score": None if args.quick else round(medians["check_empty_cache"] / medians["score"], 3)}
    if args.against is not None:
        before = versions[1].summary()
        result["against"] = before
        result["now_over_against"] = {name: round(medians[name] / before["median_s"][name], 3) for name in steps}
    report(result, args.output)


if __name__ == "__main__":
    main()
