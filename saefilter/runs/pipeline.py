"""`saefilter score`: stream a dataset through the scorer into a ranked score file.

Data flow: lines are read in chunks; each chunk is rendered, tokenised, batched by length,
scored, and appended in input order to `<out>.partial` (a checkpoint). When every line is done,
ranks and percentiles are computed from the scores alone and the final files are written
atomically. Memory stays bounded by the chunk size, whatever the dataset size.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.files import atomic_writer, iter_jsonl, json_line, write_json
from saefilter.inputs.records import BadLine, Record, check_input_path, file_sha256, read_lines
from saefilter.outputs.score_files import ScoreOutputs, Shard, score_stats, with_ranks
from saefilter.progress import ProgressFn, StatusFn, no_status
from saefilter.scoring.config import ScoreConfig, files_fingerprint
from saefilter.scoring.scorer import Prepared, Preparer, Scorer, Skipped
from saefilter.version import __version__


@dataclass
class ScoreSummary:
    input: Path
    outputs: ScoreOutputs
    n_lines: int
    n_scored: int
    n_skipped: int
    n_blank: int
    n_truncated: int
    seconds: float
    scores: np.ndarray = field(repr=False)
    top_rows: list[dict[str, Any]] = field(default_factory=list)


def refuse_overwriting_input(input_path: Path, scores: Path, output: Path | None) -> None:
    """Every engine's first guard: the score file must not be the input."""
    if scores.resolve() == Path(input_path).resolve():
        raise InputError(f"{output}: refusing to overwrite the input file")


def refuse_empty(source: object, n_lines: int) -> None:
    if n_lines == 0:
        raise InputError(f"{source}: empty file, nothing to score")


def bad_line(where: str, reason: str, flag: str = "--on-error skip") -> InputError:
    """The error of `--on-error fail` (the API's on_error='fail') at the first line that cannot be scored."""
    return InputError(f"{where}: {reason} (use {flag} to set it aside)")


def current_scores(input_path: Path, config: ScoreConfig, output: Path | None = None) -> Path | None:
    """The existing score file if it was made from this exact input and configuration, else None."""
    outputs = ScoreOutputs.for_input(input_path, output)
    if not (outputs.scores.exists() and outputs.meta.exists()):
        return None
    meta = json.loads(outputs.meta.read_text())
    try:
        expected = files_fingerprint(config)
    except InputError:
        return None  # e.g. a missing feature file: scoring will say so
    if meta.get("config_fingerprint") != expected or meta.get("input_sha256") != file_sha256(input_path):
        return None
    return outputs.scores


def every_line(_ordinal: int) -> bool:
    return True


def count_lines(path: Path, owned: Callable[[int], bool] = every_line) -> int:
    return sum(1 for ordinal, _item in enumerate(read_lines(path)) if owned(ordinal))


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def validate_all(preparer: Preparer, input_path: Path, owned: Callable[[int], bool] = every_line) -> int:
    """Fail-fast pass for --on-error fail: read, render and tokenise every line before the model loads."""
    n_lines = 0
    for ordinal, item in enumerate(read_lines(input_path)):
        if not owned(ordinal):
            continue
        n_lines += 1
        prepared = preparer.prepare(item)
        if isinstance(prepared, Skipped) and not prepared.blank:
            raise bad_line(f"{input_path}:{prepared.line_no}", prepared.reason)
    return n_lines


def score_chunk(scorer: Scorer, chunk: Sequence[Record | BadLine]) -> list[dict[str, Any]]:
    """One output row per input line, in input order: a score row, or a skipped row with its reason."""
    prepared = [scorer.prepare(item) for item in chunk]
    scored = iter(scorer.score_rows([p for p in prepared if isinstance(p, Prepared)]))
    return [next(scored) if isinstance(p, Prepared) else skipped_row(p) for p in prepared]


def skipped_row(skipped: Skipped) -> dict[str, Any]:
    return {"line": skipped.line_no, "id": skipped.record_id, "skipped": skipped.reason}


def _resume_point(outputs: ScoreOutputs, state: dict[str, Any]) -> int:
    """Lines already done in a previous run with the same input and configuration (0 if none)."""
    if not (outputs.partial.exists() and outputs.partial_state.exists()):
        return 0
    previous = json.loads(outputs.partial_state.read_text())
    if previous != state:
        raise InputError(
            f"{outputs.partial} was written for another input or configuration; "
            "delete it or run without --resume to start over"
        )
    data = outputs.partial.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]  # drop a line cut off by a kill
    if len(complete) != len(data):
        with outputs.partial.open("r+b") as handle:
            handle.truncate(len(complete))
    last = complete.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return int(json.loads(last)["line"]) if last else 0


def score_file(
    input_path: Path,
    config: ScoreConfig,
    output: Path | None = None,
    resume: bool = False,
    scorer: Scorer | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressFn | None = None,
    shard: Shard | None = None,
    status: StatusFn = no_status,
) -> ScoreSummary | Path:
    """Score a dataset into a ranked score file (or, with `shard`, one unranked shard file for `merge`).

    With --on-error fail every line is read, rendered and tokenised before the model weights load
    (unless a loaded `scorer` is passed), so a bad line costs seconds, not a model load."""
    check_input_path(input_path)
    started = time.perf_counter()
    outputs = ScoreOutputs.for_input(input_path, output, shard)
    refuse_overwriting_input(input_path, outputs.scores, output)
    owned = shard.owns if shard else every_line
    if config.on_error == "fail":
        with status("loading the tokenizer (a GGUF model is converted into the cache on first use) and checking every line..."):
            preparer = scorer.preparer if scorer is not None else Preparer.load(config)
            n_lines = validate_all(preparer, input_path, owned)
    else:
        preparer, n_lines = (scorer.preparer if scorer is not None else None), count_lines(input_path, owned)
    if shard is None:
        refuse_empty(input_path, n_lines)
    if scorer is None:
        with status("loading model, SAE and features..."):
            scorer = Scorer.load(config, preparer)
    input_sha256 = file_sha256(input_path)  # once: the checkpoint, the shard and the metadata all record it
    state = {"input": input_sha256, "config": scorer.method.fingerprint, "version": __version__}
    if shard is not None:  # a shard resumed with another --checkpoint-every would own other records
        state["shard"] = [shard.index, shard.count, shard.block]
    done = _resume_point(outputs, state) if resume else 0
    if not resume or done == 0:
        write_json(outputs.partial_state, state)
        outputs.partial.write_bytes(b"")
    if on_start:
        on_start(n_lines)
    if on_progress and done:
        on_progress(done)

    lines = (item for ordinal, item in enumerate(read_lines(input_path)) if item.line_no > done and owned(ordinal))
    with outputs.partial.open("a", encoding="utf-8") as partial:
        for chunk in chunked(lines, config.chunk_records):
            partial.write("".join(json_line(row) for row in score_chunk(scorer, chunk)))
            partial.flush()
            os.fsync(partial.fileno())
            if on_progress:
                on_progress(len(chunk))
    if shard is not None:
        return write_shard(input_path, outputs, shard, scorer.method.description(), n_lines, input_sha256)
    return finalize(input_path, outputs, scorer.method.description(), n_lines, time.perf_counter() - started,
                    input_sha256)


def write_shard(input_path: Path, outputs: ScoreOutputs, shard: Shard, description: dict[str, Any], n_rows: int,
                input_sha256: str) -> Path:
    """A finished shard: its unranked rows in line order, and what `merge` needs to check it."""
    write_json(shard_meta_path(outputs.scores), {
        "shard": [shard.index, shard.count, shard.block], "input_sha256": input_sha256,
        "lines_total": count_lines(input_path), "rows": n_rows, "run": description,
    })
    os.replace(outputs.partial, outputs.scores)
    outputs.partial_state.unlink(missing_ok=True)
    return outputs.scores


def shard_meta_path(shard_file: Path) -> Path:
    return shard_file.with_name(shard_file.name.removesuffix(".jsonl") + ".json")


def finalize(input_path: Path, outputs: ScoreOutputs, description: dict[str, Any], n_lines: int, seconds: float,
             input_sha256: str | None = None) -> ScoreSummary:
    """Partial checkpoint -> ranked score file, skipped file and metadata, all atomic."""
    scores = np.array([row["score"] for row in iter_jsonl(outputs.partial) if "score" in row], dtype=np.float64)
    n_rows = n_skipped = n_blank = n_truncated = 0
    top_rows: list[dict[str, Any]] = []
    with atomic_writer(outputs.scores) as score_out, atomic_writer(outputs.skipped) as skipped_out:
        for row in with_ranks(iter_jsonl(outputs.partial), scores):
            n_rows += 1
            if "skipped" in row:
                n_skipped += 1
                n_blank += row["skipped"] == "blank line"
                skipped_out.write(json_line(row))
                continue
            n_truncated += row["truncated"]
            score_out.write(json_line(row))
            if row["rank"] <= 5:
                top_rows.append(row)
    if n_skipped == 0:
        outputs.skipped.unlink()
    if n_rows != n_lines:
        raise RuntimeError(f"internal error: {n_lines} input lines but {n_rows} output rows")
    summary = ScoreSummary(
        input_path, outputs, n_lines, len(scores), n_skipped, n_blank, n_truncated, seconds, scores,
        sorted(top_rows, key=lambda r: r["rank"]),
    )
    write_json(outputs.meta, run_metadata(summary, description, input_sha256 or file_sha256(input_path)))
    outputs.partial.unlink(missing_ok=True)
    outputs.partial_state.unlink(missing_ok=True)
    return summary


def run_metadata(summary: ScoreSummary, description: dict[str, Any], input_sha256: str) -> dict[str, Any]:
    return {
        "saefilter": __version__,
        "input": str(summary.input),
        "input_sha256": input_sha256,
        **description,
        "counts": {
            "lines": summary.n_lines,
            "scored": summary.n_scored,
            "skipped": summary.n_skipped - summary.n_blank,
            "blank": summary.n_blank,
            "truncated": summary.n_truncated,
        },
        "score_stats": score_stats(summary.scores),
    }
