"""`saefilter prune`: turn a score file into a pruned dataset, the removed rows and a random-removal
baseline of the same size, so users can fine-tune on both and compare.

Outputs (next to the input, or in `out_dir`):
- <stem>.pruned.jsonl   kept records: the input lines byte for byte, in input order
- <stem>.removed.jsonl  removed records with score, rank and top harmful features
- <stem>.random.jsonl   the input minus the same number of records drawn at random (seeded)
- <stem>.judge.jsonl    with `--judge`: the input minus the same number of records an LLM judge
                        ranks most harmful (the third arm of the source paper's comparison)
- <stem>.prune.json     counts, cut-off, seed, score statistics and hashes of every file
Invariant, checked on the written files before anything is reported:
kept + removed + unscorable = input lines, record for record (unscorable = lines the score run set
aside, e.g. blank lines; they are listed in prune.json and in <stem>.skipped.jsonl).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.files import atomic_writer, iter_jsonl, json_line, write_json
from saefilter.inputs.records import file_sha256, iter_raw_lines, line_id
from saefilter.outputs.score_files import ScoreOutputs, output_path, score_stats

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
    judge: Path | None = None


@dataclass(frozen=True)
class JudgeArm:
    """An LLM judge's scores of the score file's rows, in the same (line) order."""

    model: str
    scores: np.ndarray
    cost: dict[str, Any]


@dataclass(frozen=True)
class ScoreColumns:
    """What the cut-off needs of every score row, as arrays (24 bytes a row, not a dict), so that a
    score file of millions of rows fits in memory. Rows are in input-line order, as score writes them."""

    lines: np.ndarray  # int64
    scores: np.ndarray  # float64
    ranks: np.ndarray  # int64

    @classmethod
    def read(cls, path: Path) -> ScoreColumns:
        lines, scores, ranks = [], [], []
        for row in iter_jsonl(path):
            lines.append(row["line"])
            scores.append(row["score"])
            ranks.append(row["rank"])
        columns = cls(np.array(lines, dtype=np.int64), np.array(scores, dtype=np.float64), np.array(ranks, dtype=np.int64))
        out_of_order = np.flatnonzero(np.diff(columns.lines) <= 0)
        if len(out_of_order):
            row = int(out_of_order[0]) + 2
            raise InputError(f"{path}:{row}: rows are not in input-line order (was the file edited or sorted?); "
                             "re-score with --rescore")
        return columns

    def __len__(self) -> int:
        return len(self.lines)


def removal_mask(columns: ScoreColumns, cutoff: Cutoff) -> np.ndarray:
    """Which rows the cut-off removes: the highest-scoring ones (rank order breaks ties)."""
    if cutoff.threshold is not None:
        return columns.scores >= cutoff.threshold
    k = cutoff.top_k if cutoff.top_k is not None else round(cutoff.fraction * len(columns))
    return columns.ranks <= min(k, len(columns))


def random_mask(columns: ScoreColumns, n: int, seed: int) -> np.ndarray:
    """n rows drawn uniformly without replacement, seeded: the baseline to fine-tune against."""
    chosen = np.random.default_rng(seed).choice(np.sort(columns.lines), size=n, replace=False) if n else np.zeros(0, np.int64)
    return np.isin(columns.lines, chosen)


def top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """The n highest scores (earlier lines first among equal scores)."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:n]] = True
    return mask


def overlaps(masks: dict[str, np.ndarray]) -> dict[str, int]:
    """How many rows each pair of removed sets (and all of them) share."""
    names = list(masks)
    out = {f"{a} & {b}": int((masks[a] & masks[b]).sum()) for i, a in enumerate(names) for b in names[i + 1 :]}
    if len(names) > 2:
        out[" & ".join(names)] = int(np.logical_and.reduce(list(masks.values())).sum())
    return out


def prune_dataset(
    input_path: Path, scores_path: Path, cutoff: Cutoff, seed: int = DEFAULT_SEED, out_dir: Path | None = None,
    judge: Callable[[ScoreColumns], JudgeArm] | None = None,
) -> PruneResult:
    """Write the outputs; `judge`, given the score file's rows, returns a judge's scores of them."""
    cutoff.validate()
    columns = ScoreColumns.read(scores_path)
    skipped_path = ScoreOutputs.for_input(input_path, scores_path).skipped
    unscorable = {r["line"]: r["skipped"] for r in iter_jsonl(skipped_path)} if skipped_path.exists() else {}
    removed = removal_mask(columns, cutoff)
    randomly_removed = random_mask(columns, int(removed.sum()), seed)
    judged = judge(columns) if judge is not None else None
    judge_removed = top_mask(judged.scores, int(removed.sum())) if judged is not None else np.zeros(len(columns), bool)
    names = ("pruned", "removed", "random") + (("judge",) if judged is not None else ())
    paths = {name: output_path(input_path, f".{name}.jsonl", out_dir) for name in names}
    report_path = output_path(input_path, ".prune.json", out_dir)
    if input_path.resolve() in {p.resolve() for p in paths.values()}:
        raise InputError(f"{input_path}: an output would overwrite the input; pass -o DIR")

    n_lines = position = 0
    score_rows = ((row["line"], row) for row in iter_jsonl(scores_path))  # in line order: checked by ScoreColumns.read
    with (
        atomic_writer(paths["pruned"], "wb") as kept_out,
        atomic_writer(paths["removed"]) as removed_out,
        atomic_writer(paths["random"], "wb") as random_out,
        atomic_writer(paths["judge"], "wb") if judged is not None else nullcontext() as judge_out,
    ):
        for line_no, raw in iter_raw_lines(input_path):
            n_lines += 1
            if line_no in unscorable:
                continue
            scored_line, row = next(score_rows, (None, None))
            if scored_line != line_no:
                raise InputError(f"{scores_path} has no row for {input_path}:{line_no}; re-score with --rescore")
            if row["id"] != line_id(raw):
                raise InputError(f"{scores_path} does not match {input_path} at line {line_no}; re-score with --rescore")
            if removed[position]:
                explained = ("line", "id", "score", "rank", "top_features", "top_tokens", "top_words", "top_spans")
                removed_out.write(json_line({**{k: row[k] for k in explained if k in row}, "record": json.loads(raw)}))
            else:
                kept_out.write(raw + b"\n")
            if not randomly_removed[position]:
                random_out.write(raw + b"\n")
            if judge_out is not None and not judge_removed[position]:
                judge_out.write(raw + b"\n")
            position += 1
        extra_line, _ = next(score_rows, (None, None))
        if extra_line is not None:
            raise InputError(f"{scores_path} has a row for line {extra_line}, past the end of {input_path} "
                             f"({n_lines} lines); re-score with --rescore")
    check_invariant(input_path, paths["pruned"], paths["removed"], set(unscorable))

    summary = {
        "input": str(input_path),
        "input_sha256": file_sha256(input_path),
        "scores": str(scores_path),
        "cutoff": cutoff.describe(),
        "seed": seed,
        "counts": {
            "input_lines": n_lines,
            "scored": len(columns),
            "unscorable": len(unscorable),
            "kept": int((~removed).sum()),
            "removed": int(removed.sum()),
            "random_removed": int(randomly_removed.sum()),
            **({"judge_removed": int(judge_removed.sum())} if judged is not None else {}),
        },
        "unscorable_lines": {str(k): v for k, v in sorted(unscorable.items())},
        "score_stats": {
            "kept": score_stats(columns.scores[~removed]),
            "removed": score_stats(columns.scores[removed]),
            "random_removed": score_stats(columns.scores[randomly_removed]),
            **({"judge_removed": score_stats(columns.scores[judge_removed])} if judged is not None else {}),
        },
        "outputs": {name: {"path": str(path), "sha256": file_sha256(path)} for name, path in paths.items()},
    }
    if judged is not None:
        arms = {"score": removed, "random": randomly_removed, "judge": judge_removed}
        summary["judge"] = {"model": judged.model, "score": "log P(yes) - log P(no)", "cost": judged.cost,
                            "removed_overlap": overlaps(arms)}
    write_json(report_path, summary)
    return PruneResult(paths["pruned"], paths["removed"], paths["random"], report_path, summary, paths.get("judge"))


def multiset_fingerprint(ids: Iterable[str]) -> tuple[int, int]:
    """(count, sum of 64-bit hashes mod 2**64): equal for equal multisets, whatever the order, in
    constant memory. Two different multisets collide with probability about 2**-64."""
    count = total = 0
    for identity in ids:
        count += 1
        total = (total + int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "little")) % 2**64
    return count, total


def check_invariant(input_path: Path, pruned: Path, removed: Path, unscorable: set[int]) -> None:
    """kept + removed + unscorable = input, as multisets of line content, re-read from the files written."""
    expected = multiset_fingerprint(line_id(raw) for line_no, raw in iter_raw_lines(input_path) if line_no not in unscorable)
    kept_count, kept_sum = multiset_fingerprint(line_id(raw) for _, raw in iter_raw_lines(pruned))
    removed_count, removed_sum = multiset_fingerprint(row["id"] for row in iter_jsonl(removed))
    if (kept_count + removed_count, (kept_sum + removed_sum) % 2**64) != expected:
        raise RuntimeError("internal error: kept + removed does not equal the input; outputs are not trustworthy")
