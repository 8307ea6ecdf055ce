"""An LLM judge over a dataset file: the rows a score file ranks, read again and judged in line order
(`prune --judge`, the third arm beside the score and the random baseline)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from saefilter.errors import InputError
from saefilter.inputs.formats import FormatError, to_conversation
from saefilter.inputs.records import Record, read_lines
from saefilter.model.loading import load_model
from saefilter.outputs.prune import JudgeArm, ScoreColumns
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.judge import JudgeScores, judge_scores


def judge_lines(
    input_path: Path, lines: np.ndarray, spec: str, config: ScoreConfig,
    on_progress: Callable[[int], None] | None = None,
) -> JudgeScores:
    """Judge scores of the records at `lines` (1-based, ascending) of `input_path`, in that order."""
    wanted = set(lines.tolist())
    conversations = []
    for item in read_lines(input_path):
        if item.line_no not in wanted:
            continue
        if not isinstance(item, Record):
            raise InputError(f"{item.message()} (a scored line that no longer parses: re-score with --rescore)")
        try:
            conversations.append(to_conversation(item.data, config.field))
        except FormatError as err:
            raise InputError(f"{input_path}:{item.line_no}: {err}") from None
    if len(conversations) != len(lines):
        raise InputError(f"{input_path} has {len(conversations)} of the {len(lines)} scored lines; re-score with --rescore")
    judge = load_model(spec, device=config.device, dtype=config.resolved_dtype, trust_remote_code=config.trust_remote_code)
    try:
        return judge_scores(judge.model, judge.tokenizer, conversations, config.batch_size, config.max_tokens, on_progress)
    except ValueError as err:
        raise InputError(f"--judge {spec}: {err}") from None


def judge_arm(
    input_path: Path, spec: str, config: ScoreConfig, on_progress: Callable[[int], None] | None = None
) -> Callable[[ScoreColumns], JudgeArm]:
    """What `prune_dataset` calls with the score file's rows: the judge's scores of them, and its cost."""

    def run(columns: ScoreColumns) -> JudgeArm:
        judged = judge_lines(input_path, columns.lines, spec, config, on_progress)
        n = max(len(columns), 1)
        cost = {"rows": len(columns), "seconds": round(judged.seconds, 2), "tokens": judged.tokens,
                "seconds_per_1000": round(judged.seconds * 1000 / n, 2), "truncated": judged.truncated}
        return JudgeArm(spec, judged.scores, cost)

    return run
