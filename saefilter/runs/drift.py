"""`saefilter drift`: the base model once, then each tuned model, over the same encoded pairs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saefilter.drift.logprobs import chat, encode_last_answer, mean_answer_logprobs
from saefilter.drift.models import check_same_tokens, is_adapter, load_tuned, tuned_tokenizer
from saefilter.drift.pairs import MatchedPair, load_pairs
from saefilter.drift.settings import DriftSettings
from saefilter.drift.stats import drift_by_kind
from saefilter.errors import InputError
from saefilter.features.feature_set import load_feature_set
from saefilter.features.provenance import Provenance
from saefilter.inputs.formats import FormatError
from saefilter.model.loading import DEFAULT_MODEL, load_model, load_tokenizer
from saefilter.runs.overlap import overlap_report
from saefilter.scoring.config import resolve_features_path


@dataclass
class ModelDrift:
    spec: str
    adapter: bool
    summary: dict  # {"overall": Drift, "kinds": {kind: Drift}}
    harmful: np.ndarray  # mean log-prob per pair
    benign: np.ndarray
    seconds: float


@dataclass
class DriftReport:
    base: str
    settings: DriftSettings
    pairs: list[MatchedPair]
    base_harmful: np.ndarray
    base_benign: np.ndarray
    base_seconds: float
    tuned: list[ModelDrift] = field(default_factory=list)
    overlap: dict[str, Any] | None = None  # of the pairs with the feature set (a file of pairs only)

    def above(self, max_drift: float) -> list[str]:
        """The tuned models whose overall drift exceeds `max_drift` (what `--max-drift` gates on)."""
        return [m.spec for m in self.tuned if m.summary["overall"].drift > max_drift]

    def as_json(self, per_pair: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "base": self.base,
            "pairs": {"source": self.settings.pairs, "split": self.settings.split, "n": len(self.pairs),
                      **({"overlap": self.overlap} if self.overlap is not None else {})},
            "unit": "nats per answer token; drift = change of (harmful - benign) from base",
            "models": {},
        }
        for model in self.tuned:
            entry: dict[str, Any] = {
                "adapter": model.adapter,
                "overall": model.summary["overall"].as_dict(),
                "kinds": {kind: d.as_dict() for kind, d in model.summary["kinds"].items()},
                "seconds": round(model.seconds, 2),
            }
            if per_pair:
                entry["per_pair"] = [
                    {"id": p.pair_id, "kind": p.kind, "harmful": h, "benign": b, "base_harmful": bh, "base_benign": bb}
                    for p, h, b, bh, bb in zip(
                        self.pairs, model.harmful, model.benign, self.base_harmful, self.base_benign, strict=True
                    )
                ]
            out["models"][model.spec] = entry
        return out


def encode_pairs(pairs: list[MatchedPair], tokenizer: Any, max_tokens: int) -> list:
    """[harmful_0, benign_0, harmful_1, ...] encoded; a pair that cannot be encoded is an error naming it."""
    samples = []
    for pair in pairs:
        for side, answer in (("harmful", pair.harmful), ("benign", pair.benign)):
            try:
                samples.append(encode_last_answer(chat(pair.prompt, answer), tokenizer, max_tokens))
            except FormatError as err:
                raise InputError(f"pair '{pair.pair_id}' ({side} answer): {err}") from None
    return samples


def pairs_overlap(pairs: list[MatchedPair], settings: DriftSettings, base: str | None = None) -> dict[str, Any]:
    """A file of pairs against the feature set's provenance (both answers of each pair; 'embedded' is
    the set shipped for `base`): pairs the score was built or chosen on say little about what pruning
    by that score does."""
    try:
        provenance = load_feature_set(resolve_features_path(settings.features, base or DEFAULT_MODEL)).provenance
    except InputError:
        if settings.features != "embedded":
            raise
        provenance = Provenance()  # a base with no shipped set: the overlap is reported as unknown
    answers = [chat(p.prompt, text) for p in pairs for text in (p.harmful, p.benign)]
    origins = [f"{settings.pairs}:{p.line} ({side})" for p in pairs for side in ("harmful", "benign")]
    return overlap_report(provenance, answers, "pair answers", settings.strict, origins)


def side_logprobs(model: Any, samples: list, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    values = mean_answer_logprobs(model, samples, batch_size)
    return values[0::2], values[1::2]


def run_drift(
    base: str, tuned: list[str], settings: DriftSettings, on_model: Callable[[str], None] | None = None
) -> DriftReport:
    """Drift of each tuned model from `base` on the settings' pairs. Every tokenizer is checked
    against the base's before any weights load; the base is run once."""
    if not tuned:
        raise InputError("name at least one tuned model or adapter folder")
    pairs = load_pairs(settings.pairs, settings.split, settings.kinds)
    overlap = pairs_overlap(pairs, settings, base) if settings.pairs != "builtin" else None
    base_tokenizer = load_tokenizer(base)
    samples = encode_pairs(pairs, base_tokenizer, settings.max_tokens)
    for spec in tuned:
        tokenizer = tuned_tokenizer(spec, base_tokenizer)
        if tokenizer is not base_tokenizer:
            theirs = encode_pairs(pairs, tokenizer, settings.max_tokens)
            check_same_tokens(base, spec, [s.input_ids for s in samples], [s.input_ids for s in theirs])

    if on_model:
        on_model(base)
    start = time.perf_counter()
    base_model = load_model(base, device=settings.device, dtype=settings.dtype, tokenizer=base_tokenizer).model
    base_harmful, base_benign = side_logprobs(base_model, samples, settings.batch_size)
    del base_model
    report = DriftReport(base, settings, pairs, base_harmful, base_benign, time.perf_counter() - start, overlap=overlap)
    kinds = [p.kind for p in pairs]
    for spec in tuned:
        if on_model:
            on_model(spec)
        start = time.perf_counter()
        model = load_tuned(spec, base, settings.device, settings.dtype, base_tokenizer)
        harmful, benign = side_logprobs(model, samples, settings.batch_size)
        del model
        summary = drift_by_kind(kinds, (base_harmful, base_benign), (harmful, benign), settings.bootstrap, settings.seed)
        report.tuned.append(ModelDrift(spec, is_adapter(spec), summary, harmful, benign, time.perf_counter() - start))
    return report
