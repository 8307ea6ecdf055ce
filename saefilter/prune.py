"""`saefilter prune`: turn a score file into a pruned dataset, the removed rows and a random-removal
baseline of the same size, so users can fine-tune on both and compare.

Outputs (next to the input, or in `out_dir`):
- <stem>.pruned.jsonl   kept records: the input lines byte for byte, in input order
- <stem>.removed.jsonl  removed records with score, rank and top harmful features
- <stem>.random.jsonl   the input minus the same number of records drawn at random (seeded)
- <stem>.prune.json     counts, cut-off, seed, score statistics and hashes of every file
Invariant, checked on the written files before anything is reported:
kept + removed + unscorable = input lines, record for record (unscorable = lines the score run set
aside, e.g. blank lines; they are listed in prune.json and in <stem>.skipped.jsonl).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.outputs import atomic_writer, iter_jsonl, json_line, output_path, write_json
from saefilter.pipeline import ScoreOutputs, score_stats
from saefilter.records import InputError, file_sha256, iter_raw_lines, line_id

DEFAULT_SEED = 20260522


@dataclass(frozen=True)
class Cutoff:
    top_k: int | None = None
    fraction: float | None = None
    threshold: float | None = None

    def validate(self) -> None:
        given = [v for v in (self.top_k, self.fraction, self.threshold) if v is not None]
        if len(given) != 1:
            raise InputError("give exactly one of --top-k, --fraction, --threshold")
        if self.top_k is not None and self.top_k < 0:
            raise InputError("--top-k must be >= 0")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise InputError("--fraction must be between 0 and 1")

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in {"top_k": self.top_k, "fraction": self.fraction, "threshold": self.threshold}.items() if v is not None}


@dataclass
class PruneResult:
    pruned: Path
    removed: Path
    random: Path
    report: Path
    summary: dict[str, Any]


def lines_to_remove(rows: list[dict[str, Any]], cutoff: Cutoff) -> set[int]:
    """Line numbers of the highest-scoring rows under the cut-off (rank order breaks ties)."""
    by_rank = sorted(rows, key=lambda r: r["rank"])
    if cutoff.threshold is not None:
        return {r["line"] for r in by_rank if r["score"] >= cutoff.threshold}
    k = cutoff.top_k if cutoff.top_k is not None else int(round(cutoff.fraction * len(rows)))
    return {r["line"] for r in by_rank[: min(k, len(rows))]}


def random_lines(rows: list[dict[str, Any]], n: int, seed: int) -> set[int]:
    lines = np.array(sorted(r["line"] for r in rows), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return set(rng.choice(lines, size=n, replace=False).tolist()) if n else set()


def prune_dataset(
    input_path: Path, scores_path: Path, cutoff: Cutoff, seed: int = DEFAULT_SEED, out_dir: Path | None = None
) -> PruneResult:
    cutoff.validate()
    rows = list(iter_jsonl(scores_path))
    by_line = {r["line"]: r for r in rows}
    skipped_path = ScoreOutputs.for_input(input_path, scores_path).skipped
    unscorable = {r["line"]: r["skipped"] for r in iter_jsonl(skipped_path)} if skipped_path.exists() else {}
    removed_lines = lines_to_remove(rows, cutoff)
    random_removed = random_lines(rows, len(removed_lines), seed)
    paths = {name: output_path(input_path, f".{name}.jsonl", out_dir) for name in ("pruned", "removed", "random")}
    report_path = output_path(input_path, ".prune.json", out_dir)
    if input_path.resolve() in {p.resolve() for p in paths.values()}:
        raise InputError(f"{input_path}: an output would overwrite the input; pass -o DIR")

    n_lines = 0
    with (
        atomic_writer(paths["pruned"], "wb") as kept_out,
        atomic_writer(paths["removed"]) as removed_out,
        atomic_writer(paths["random"], "wb") as random_out,
    ):
        for line_no, raw in iter_raw_lines(input_path):
            n_lines += 1
            if line_no in unscorable:
                continue
            if line_no not in by_line:
                raise InputError(f"{scores_path} has no row for {input_path}:{line_no}; re-score with --rescore")
            row = by_line[line_no]
            if row["id"] != line_id(raw):
                raise InputError(f"{scores_path} does not match {input_path} at line {line_no}; re-score with --rescore")
            if line_no in removed_lines:
                removed_out.write(json_line({**{k: row[k] for k in ("line", "id", "score", "rank", "top_features", "top_tokens")},
                                             "record": json.loads(raw)}))
            else:
                kept_out.write(raw + b"\n")
            if line_no not in random_removed:
                random_out.write(raw + b"\n")
    check_invariant(input_path, paths["pruned"], paths["removed"], set(unscorable))

    scores = {line: by_line[line]["score"] for line in by_line}
    summary = {
        "input": str(input_path),
        "input_sha256": file_sha256(input_path),
        "scores": str(scores_path),
        "cutoff": cutoff.describe(),
        "seed": seed,
        "counts": {
            "input_lines": n_lines,
            "scored": len(rows),
            "unscorable": len(unscorable),
            "kept": len(rows) - len(removed_lines),
            "removed": len(removed_lines),
            "random_removed": len(random_removed),
        },
        "unscorable_lines": {str(k): v for k, v in sorted(unscorable.items())},
        "score_stats": {
            "kept": score_stats(np.array([s for line, s in scores.items() if line not in removed_lines])),
            "removed": score_stats(np.array([scores[line] for line in removed_lines])),
            "random_removed": score_stats(np.array([scores[line] for line in random_removed])),
        },
        "outputs": {name: {"path": str(path), "sha256": file_sha256(path)} for name, path in paths.items()},
    }
    write_json(report_path, summary)
    return PruneResult(paths["pruned"], paths["removed"], paths["random"], report_path, summary)


def check_invariant(input_path: Path, pruned: Path, removed: Path, unscorable: set[int]) -> None:
    """kept + removed + unscorable = input, as multisets of line content."""
    expected = Counter(line_id(raw) for line_no, raw in iter_raw_lines(input_path) if line_no not in unscorable)
    kept = Counter(line_id(raw) for _, raw in iter_raw_lines(pruned))
    removed_ids = Counter(row["id"] for row in iter_jsonl(removed))
    if kept + removed_ids != expected:
        raise RuntimeError("internal error: kept + removed does not equal the input; outputs are not trustworthy")
