"""Write outputs safely: atomic files, score rows, ranks and percentiles.

Every file lands through a temporary file in the same folder and a rename, so a crash never
leaves a truncated file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np


def component_id(feature: dict[str, Any]) -> str:
    """How a score row's top feature is named: its SAE index, or "direction J" for a harmful
    direction of the set (`features add-direction`)."""
    return str(feature["index"]) if "index" in feature else f"direction {feature['direction']}"


def meta_path_for(scores: Path) -> Path:
    """The metadata file written beside a score file: data.scores.jsonl and data.jsonl (a custom
    --output) both get data.scores.meta.json. `score` writes it, `report` reads it."""
    base = scores.name.removesuffix(".jsonl").removesuffix(".scores")
    return scores.with_name(f"{base}.scores.meta.json")


SCORE_DECIMALS = 6  # enough to rank; few enough that batch-size float noise never shows


def dataset_stem(path: Path) -> str:
    """'data.jsonl.gz' -> 'data': the name all outputs of a dataset share."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".parquet", ".csv"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def output_path(input_path: Path, suffix: str, out_dir: Path | None = None) -> Path:
    return (out_dir or input_path.parent) / f"{dataset_stem(input_path)}{suffix}"


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as handle:
        handle.write(text)


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def round_score(value: float) -> float:
    return round(float(value), SCORE_DECIMALS)


def ranks_and_percentiles(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = highest score (ties broken by input order); percentile = % of rows scoring <= it."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.lexsort((np.arange(n), -scores))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(1, n + 1)
    sorted_scores = np.sort(scores)
    at_or_below = np.searchsorted(sorted_scores, scores, side="right")
    return ranks, np.round(100.0 * at_or_below / n, 2)


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
