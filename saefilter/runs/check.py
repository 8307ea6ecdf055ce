"""`saefilter check`: a gate for dataset repositories (pre-commit hook).

Every record above the threshold is reported as `file:line  score  top feature`. Scores are cached
by content (record hash) and configuration fingerprint in SQLite, so a commit re-encodes only the
records it changed; a fully cached run never imports torch or loads the model.
Settings come from `saefilter.toml` or `[tool.saefilter]` in `pyproject.toml`, overridable by flags.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.features.feature_set import load_feature_set
from saefilter.inputs.records import BadLine, Record, read_lines
from saefilter.outputs.score_files import why_flagged
from saefilter.scoring.config import ScoreConfig, files_fingerprint

SETTINGS_FILES = ("saefilter.toml", "pyproject.toml")


def find_settings(start: Path) -> tuple[dict[str, Any], Path | None]:
    """[tool.saefilter] (pyproject.toml) or the top level of saefilter.toml, searching upwards."""
    for folder in [start, *start.parents]:
        for name in SETTINGS_FILES:
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as err:
                raise InputError(f"{path}: invalid TOML ({err})") from None
            settings = data.get("tool", {}).get("saefilter") if name == "pyproject.toml" else data
            if settings is not None:
                return dict(settings), path
    return {}, None


def merge_settings(settings: dict[str, Any], flags: dict[str, Any], source: Path | None) -> tuple[ScoreConfig, float | None]:
    """Built-in defaults <- settings file <- command-line flags (flags given as None are unset)."""
    known = {f.name for f in fields(ScoreConfig)} | {"threshold"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"{source}: unknown saefilter setting(s) {', '.join(unknown)}")
    merged = {**settings, **{k: v for k, v in flags.items() if v is not None}}
    threshold = merged.pop("threshold", None)
    return replace(ScoreConfig(), **merged), threshold


def suggested_threshold(config: ScoreConfig) -> float | None:
    """A feature set may carry a calibrated threshold (e.g. a high percentile of benign scores)."""
    meta = load_feature_set(config.features_path).meta
    value = meta.get("suggested_threshold", {})
    return float(value["value"]) if isinstance(value, dict) and "value" in value else None


class ScoreCache:
    """Per-record score rows keyed by (configuration fingerprint, record content hash)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS scores (fingerprint TEXT, record_id TEXT, row TEXT, PRIMARY KEY (fingerprint, record_id))"
        )

    def get(self, fingerprint: str, record_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(record_ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = f"SELECT record_id, row FROM scores WHERE fingerprint = ? AND record_id IN ({','.join('?' * len(chunk))})"
            found.update({rid: json.loads(row) for rid, row in self.db.execute(query, [fingerprint, *chunk])})
        return found

    def put(self, fingerprint: str, rows: Iterable[dict[str, Any]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(fingerprint, r["id"], json.dumps(r)) for r in rows]
            )


@dataclass
class Finding:
    path: str
    line: int
    score: float
    why: tuple[str, str, str]  # `outputs.score_files.why_flagged`: the top latent, the words, the phrase

    def format(self) -> str:
        phrase = f" {self.why[2]}" if self.why[2] else ""
        return f"{self.path}:{self.line}  {self.score:.4f}  {self.why[0]}  ({self.why[1]}){phrase}"


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    n_records: int = 0
    n_cached: int = 0


def check_files(paths: list[Path], config: ScoreConfig, threshold: float, cache: ScoreCache) -> CheckResult:
    result = CheckResult()
    fingerprint = files_fingerprint(config)
    scorer = None
    for path in paths:
        records: list[Record] = []
        try:
            for item in read_lines(path):
                if isinstance(item, BadLine):
                    if not item.blank:
                        result.errors.append(item.message())
                    continue
                records.append(item)
        except InputError as err:  # a file the hook cannot read at all names itself; the others are checked
            result.errors.append(str(err))
            continue
        cached = cache.get(fingerprint, (r.record_id for r in records))
        missing = [r for r in records if r.record_id not in cached]
        if missing:
            if scorer is None:
                from saefilter.scoring.scorer import Scorer  # the model loads only when something is new

                scorer = Scorer.load(config)
            new_rows = score_records(scorer, missing, result.errors)
            cache.put(fingerprint, new_rows)
            cached.update({row["id"]: row for row in new_rows})
        result.n_records += len(records)
        result.n_cached += len(records) - len(missing)
        for record in records:
            row = cached.get(record.record_id)
            if row is not None and row["score"] >= threshold:
                result.findings.append(Finding(str(path), record.line_no, row["score"], why_flagged(row)))
    return result


def score_records(scorer: Any, records: list[Record], errors: list[str]) -> list[dict[str, Any]]:
    """The score rows of `records` (the score command's `score_chunk`); a record that cannot be scored
    goes to `errors` as `path:line: reason`, which blocks the commit."""
    from saefilter.runs.pipeline import score_chunk

    rows = score_chunk(scorer, records)
    errors += [f"{record.path}:{record.line_no}: {row['skipped']}" for record, row in zip(records, rows, strict=True)
               if "skipped" in row]
    return [row for row in rows if "skipped" not in row]


