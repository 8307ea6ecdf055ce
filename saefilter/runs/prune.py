"""`saefilter prune`'s run: the score file to prune by (reused when it matches the input and the
settings, made otherwise), then `outputs.prune.prune_dataset` writes the sets."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from saefilter.outputs.prune import DEFAULT_SEED, Cutoff, JudgeArm, PruneResult, ScoreColumns, prune_dataset
from saefilter.runs.judge import judge_arm
from saefilter.runs.pipeline import current_scores, score_file
from saefilter.scoring.config import ScoreConfig


def scores_for(
    input_path: Path, config: ScoreConfig, scores: Path | None = None, rescore: bool = False,
    run_scoring: Callable[[], Path] | None = None,
) -> tuple[Path, bool]:
    """(score file to prune by, whether it was reused): `scores` as given; else the existing score
    file if it was made from this input with this configuration (checked by hash); else a new one
    (`run_scoring`, by default `score_file` without progress)."""
    if scores is not None and not rescore:
        return scores, True
    existing = None if rescore else current_scores(input_path, config, scores)
    if existing is not None:
        return existing, True
    if run_scoring is None:
        return score_file(input_path, config, scores).outputs.scores, False
    return run_scoring(), False


def prune(
    input_path: Path,
    config: ScoreConfig,
    cutoff: Cutoff,
    seed: int = DEFAULT_SEED,
    out_dir: Path | None = None,
    scores: Path | None = None,
    rescore: bool = False,
    judge: str | None = None,
    run_scoring: Callable[[], Path] | None = None,
    judge_progress: Callable[[int], AbstractContextManager[Callable[[int], None]]] | None = None,
    on_reuse: Callable[[Path], None] | None = None,
) -> PruneResult:
    """The pruned set, the removed rows, a random baseline of the same size and, with `judge` (a
    model spec), the rows that judge would keep; `judge_progress(total)` gives the judge's progress
    bar, `on_reuse` hears of a score file used again."""
    cutoff.validate()
    path, reused = scores_for(input_path, config, scores, rescore, run_scoring)
    if reused and scores is None and on_reuse is not None:
        on_reuse(path)

    def judged(columns: ScoreColumns) -> JudgeArm:
        assert judge is not None
        with (judge_progress(len(columns)) if judge_progress else nullcontext(None)) as advance:
            return judge_arm(input_path, judge, config, advance)(columns)

    return prune_dataset(input_path, path, cutoff, seed, out_dir, judged if judge else None)
