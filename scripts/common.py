"""What the scripts share, in one module: JSONL and CSV in the scripts' own file format (the files
they write under artifacts/ and saefilter/contrasts/ keep their bytes), the ToxiGen reader, and the
median timer of the speed benchmarks. Scripts import it as a sibling module (Python puts a script's
folder on its path); nothing here belongs in the package a user installs."""

from __future__ import annotations

import csv
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def report(result: dict, output: Path | None) -> None:
    """A benchmark's result: printed, and written as JSON to `output` when given."""
    print(json.dumps(result, indent=1))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1) + "\n")


def time_it(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def toxigen_group(path: Path) -> str:
    """The target group a ToxiGen file is about: hate_muslim_sentences.txt -> muslim."""
    stem = path.stem.split("_", 1)[1]
    return re.sub(r"_(sentences|1k)$", "", stem)


def toxigen_by_group(root: Path, kind: str) -> dict[str, list[str]]:
    """ToxiGen lines per target group, split on the literal '\\n-' separators its prompt files use."""
    groups: dict[str, set[str]] = {}
    for path in sorted(root.rglob(f"{kind}_*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for part in line.split("\\n"):
                text = part.strip().removeprefix("-").strip()
                if len(text) > 10:
                    groups.setdefault(toxigen_group(path), set()).add(text)
    return {group: sorted(texts) for group, texts in sorted(groups.items())}
