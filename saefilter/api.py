"""The Python API: what the CLI runs, callable from a notebook or a `datasets` pipeline.

    import saefilter
    scorer = saefilter.load_scorer()                      # the embedded default model, SAE and features
    rows = list(scorer.score([{"messages": [...]}, ...]))  # the rows a score file holds, in order
    saefilter.score_file("data.jsonl")                     # = saefilter score data.jsonl
    saefilter.prune_file("data.jsonl", fraction=0.25)      # = saefilter prune data.jsonl --fraction 0.25
    saefilter.build_features("features.json")              # = saefilter features build -o features.json
    saefilter.measure_drift("smollm2-135m-instruct", ["out/adapter"])  # = saefilter drift

Options are the CLI's flags as keyword arguments (`max_tokens=512`, `on_error="skip"`, ...). Nothing
here imports torch until a model is loaded, so `import saefilter` stays instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from saefilter.errors import InputError
from saefilter.features.settings import BUILD_MAX_TOKENS, DEFAULT_TOP_EACH, SelectionSettings
from saefilter.inputs.records import Record, parse_line, table_line
from saefilter.model.loading import DEFAULT_MODEL
from saefilter.outputs.score_files import with_ranks
from saefilter.scoring.config import DEFAULT_FEATURES, DEFAULT_SAE, ScoreConfig

if TYPE_CHECKING:
    from saefilter.features.feature_set import FeatureSet
    from saefilter.outputs.prune import PruneResult
    from saefilter.runs.drift import DriftReport
    from saefilter.runs.pipeline import ScoreSummary
    from saefilter.scoring.scorer import Scorer

SELECTION_OPTIONS = tuple(f.name for f in fields(SelectionSettings))


def make_config(model: str, sae: str, features: str, options: Mapping[str, Any]) -> ScoreConfig:
    """A checked ScoreConfig; an unknown option is a TypeError naming the ones that exist."""
    return ScoreConfig.from_options({"model": str(model), "sae": str(sae), "features": str(features), **options},
                                    strict=True)


class RecordScorer:
    """A loaded model, SAE and feature set that scores records (dicts in any supported format)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    @property
    def config(self) -> ScoreConfig:
        return self.scorer.config

    def stream(self, records: Iterable[Mapping[str, Any]], source: str = "<records>") -> Iterator[dict[str, Any]]:
        """One row per record, in order, as soon as its chunk is scored: the score file's rows without
        rank and percentile (which need every score). Record i is line i+1 of `source`; its id is the
        hash of its compact JSON (as for a Parquet row). A record that cannot be scored raises
        InputError naming it (on_error="fail") or comes back as {"line", "id", "skipped": reason}."""
        from saefilter.runs.pipeline import chunked, score_chunk

        items = (as_record(record, source, i) for i, record in enumerate(records, start=1))
        for chunk in chunked(items, self.config.chunk_records):
            if self.config.on_error == "fail":
                check_chunk(self.scorer, chunk)
            yield from score_chunk(self.scorer, chunk)

    def score(self, records: Iterable[Mapping[str, Any]], source: str = "<records>") -> Iterator[dict[str, Any]]:
        """The rows `saefilter score` writes for these records, rank and percentile included, in
        input order (scores all records before yielding the first row; `stream` does not wait).
        With on_error="skip" a record that cannot be scored comes back in its place as the row the
        CLI writes to <stem>.skipped.jsonl, so every record is accounted for."""
        rows = list(self.stream(records, source))
        yield from with_ranks(rows, np.array([row["score"] for row in rows if "score" in row], dtype=np.float64))


def as_record(record: Mapping[str, Any], source: str, line_no: int) -> Record:
    if not isinstance(record, Mapping):
        raise InputError(f"{source}:{line_no}: expected a dict (a record), got {type(record).__name__}")
    parsed = parse_line(source, line_no, table_line(dict(record)))
    if not isinstance(parsed, Record):
        raise InputError(parsed.message())
    return parsed


def check_chunk(scorer: Scorer, chunk: list[Record]) -> None:
    from saefilter.runs.pipeline import bad_line
    from saefilter.scoring.scorer import Skipped

    for record in chunk:
        prepared = scorer.prepare(record)
        if isinstance(prepared, Skipped):
            raise bad_line(f"{record.path}:{record.line_no}", prepared.reason, "on_error='skip'")


def load_scorer(
    model: str = DEFAULT_MODEL, sae: str = DEFAULT_SAE, features: str = DEFAULT_FEATURES, **options: Any
) -> RecordScorer:
    """Load the model, SAE and harmful features once; score as many records as you like with it."""
    from saefilter.scoring.scorer import Scorer

    return RecordScorer(Scorer.load(make_config(model, sae, features, options)))


def score_file(
    path: str | Path,
    output: str | Path | None = None,
    *,
    model: str = DEFAULT_MODEL,
    sae: str = DEFAULT_SAE,
    features: str = DEFAULT_FEATURES,
    resume: bool = False,
    scorer: RecordScorer | None = None,
    **options: Any,
) -> ScoreSummary:
    """`saefilter score PATH`: the ranked score file next to the input (or at `output`); returns its
    summary (`.outputs.scores` is the file). Pass `scorer` to reuse a loaded model."""
    from saefilter.runs.pipeline import score_file as run

    config = scorer.config if scorer is not None else make_config(model, sae, features, options)
    return run(Path(path), config, Path(output) if output else None, resume, scorer.scorer if scorer else None)


def prune_file(
    path: str | Path,
    *,
    top_k: int | None = None,
    fraction: float | None = None,
    threshold: float | None = None,
    seed: int | None = None,
    output_dir: str | Path | None = None,
    scores: str | Path | None = None,
    rescore: bool = False,
    judge: str | None = None,
    model: str = DEFAULT_MODEL,
    sae: str = DEFAULT_SAE,
    features: str = DEFAULT_FEATURES,
    **options: Any,
) -> PruneResult:
    """`saefilter prune PATH`: pruned, removed and random-baseline files (and with `judge`, a model
    spec, the judge arm); scores first unless a score file made from this input with this
    configuration exists (or `scores` names one)."""
    from saefilter.outputs.prune import DEFAULT_SEED, Cutoff
    from saefilter.runs.prune import prune

    config = make_config(model, sae, features, options)
    return prune(Path(path), config, Cutoff(top_k, fraction, threshold), DEFAULT_SEED if seed is None else seed,
                 Path(output_dir) if output_dir else None, Path(scores) if scores else None, rescore, judge)


def build_features(
    output: str | Path,
    *,
    harmful: Iterable[str | Path] = (),
    benign: Iterable[str | Path] = (),
    contrasts: Iterable[str] = (),
    top_each: int = DEFAULT_TOP_EACH,
    paired: bool = False,
    direction: bool = False,
    hard_negatives: Iterable[str | Path] = (),
    identity_reference: Iterable[str | Path] = (),
    column: str | None = None,
    model: str = DEFAULT_MODEL,
    sae: str = DEFAULT_SAE,
    **options: Any,
) -> FeatureSet:
    """`saefilter features build -o OUTPUT`: a harmful-feature set selected from reference files
    (`harmful`/`benign`) or the built-in `contrasts`, saved to `output` and returned. Options are the
    selection's (`top`, `identity_filter`, ...: features/settings.py) and the scoring run's, with the
    CLI's defaults (a build reads at most BUILD_MAX_TOKENS tokens of a text)."""
    from saefilter.features.feature_set import save_feature_set
    from saefilter.runs.features import build_features as run

    chosen = {k: options.pop(k) for k in list(options) if k in SELECTION_OPTIONS}
    config = make_config(model, sae, DEFAULT_FEATURES, {"max_tokens": BUILD_MAX_TOKENS, **options})
    feature_set = run(config, [Path(p) for p in harmful], [Path(p) for p in benign], list(contrasts), None,
                      column, SelectionSettings(**chosen), top_each, paired, direction, [str(p) for p in hard_negatives],
                      identity_reference=[Path(p) for p in identity_reference])
    save_feature_set(feature_set, Path(output))
    return feature_set


def measure_drift(
    base: str, tuned: Iterable[str], *, pairs: str = "builtin", split: str = "test", kinds: Iterable[str] = (),
    **settings: Any,
) -> DriftReport:
    """`saefilter drift BASE TUNED...`: how far each fine-tuned model (or LoRA adapter folder) moved
    towards the harmful answers of matched pairs; `.as_json()` is what `--json` writes."""
    from saefilter.drift.settings import DriftSettings
    from saefilter.runs.drift import run_drift

    return run_drift(base, list(tuned), DriftSettings(pairs, split, tuple(kinds), **settings))
