"""Everything loaded once for a scoring run: model, SAE, harmful features and their proximity.

`Scorer.load` checks the configuration (feature indices vs SAE width, SAE width vs model width,
hook layer vs model depth) before any forward pass, so a bad combination fails in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from saefilter.errors import InputError
from saefilter.features.feature_set import Component, FeatureSet, HarmfulFeature, load_feature_set
from saefilter.inputs.formats import Conversation, FormatError, to_conversation
from saefilter.inputs.records import BadLine, Record
from saefilter.inputs.render import EncodedSample, encode, render
from saefilter.model.activations import run_in_batches
from saefilter.model.layers import check_hook_point
from saefilter.model.loading import LoadedModel, load_model, load_scoring_tokenizer
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.geometry import FeatureProximity
from saefilter.sae.loading import LoadedSAE, load_sae
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.sample import FeatureShare, round_score, sample_contributions, score_summary
from saefilter.scoring.words import Word, top_spans, top_words, word_masses


@dataclass(frozen=True)
class Prepared:
    record: Record
    encoded: EncodedSample


@dataclass(frozen=True)
class Skipped:
    line_no: int
    record_id: str
    reason: str
    blank: bool = False


def check_widths(lm: LoadedModel, sae: LoadedSAE) -> None:
    check_hook_point(lm.model, sae.hook)
    check_width(int(lm.model.config.hidden_size), sae)


def check_width(hidden: int, sae: LoadedSAE) -> None:
    if hidden != sae.d_in:
        raise InputError(
            f"the SAE expects {sae.d_in}-dimensional inputs but the model's residual stream has {hidden}; "
            "use an SAE trained on this model"
        )


def load_backbone(
    config: ScoreConfig, check_sae: Callable[[int], None] | None = None, tokenizer: Any = None
) -> tuple[LoadedModel, LoadedSAE]:
    """Model and SAE, checked against each other (and by `check_sae(d_sae)`) before any forward pass."""
    sae = load_sae(config.sae_spec)
    if check_sae:
        check_sae(sae.d_sae)
    lm = load_model(config.model, config.device, config.dtype, config.trust_remote_code, tokenizer,
                    residuals_only=True, through_layer=sae.hook.layer)
    check_widths(lm, sae)
    sae.sae.to(lm.device)
    return lm, sae


@dataclass(frozen=True)
class Method:
    """What turns SAE features into a score: the SAE, the harmful features and their proximity.

    Loads without the model, so a driver that never runs a forward pass (the Ray engine's) can
    check the configuration and describe the run.
    """

    config: ScoreConfig
    sae: LoadedSAE
    feature_set: FeatureSet
    proximity: FeatureProximity

    @classmethod
    def load(cls, config: ScoreConfig, sae: LoadedSAE | None = None, feature_set: FeatureSet | None = None) -> Method:
        feature_set = feature_set or load_feature_set(config.features_path)
        sae = sae or load_sae(config.sae_spec)
        feature_set.check_against(sae.d_sae, sae.d_in)
        decoder = sae.sae.W_dec.detach().float().cpu().numpy()
        return cls(config, sae, feature_set, feature_set.proximity(decoder, config.neighbours, config.kernel))

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint(self.sae.fingerprint, self.feature_set.fingerprint)

    @property
    def scoring_settings(self) -> dict[str, Any]:
        """What a feature's contribution depends on besides the SAE and the set: a benign baseline
        measured under other settings does not apply."""
        return {"aggregation": self.config.aggregation, "neighbours": self.proximity.k,
                "kernel": self.config.kernel, "tokens": self.config.tokens}

    @cached_property
    def benign_baseline(self) -> np.ndarray | None:
        baseline = self.feature_set.benign_baseline(self.scoring_settings)
        return None if baseline is None else np.asarray(baseline, dtype=np.float64)

    def description(self) -> dict[str, Any]:
        """What produced the scores: enough to reproduce them and to tell two runs apart."""
        config = self.config
        return {
            "config_fingerprint": self.fingerprint,
            "model": config.model,
            "sae": config.sae,
            "sae_fingerprint": self.sae.fingerprint,
            "hook": self.sae.hook.name,
            "features": config.features,
            "features_fingerprint": self.feature_set.fingerprint,
            "n_harmful_features": len(self.feature_set.features),
            "n_harmful_directions": len(self.feature_set.directions),
            "tokens": config.tokens,
            "aggregation": config.aggregation,
            "neighbours": self.proximity.k,
            "kernel": config.kernel,
            "background_cosine": round(self.proximity.background, 6),
            "explanations": "above benign baseline" if self.benign_baseline is not None else "by contribution",
            "max_tokens": config.max_tokens,
            "field": config.field,
            "dtype": config.resolved_dtype,
            "dtype_requested": config.dtype,
        }


@dataclass(frozen=True)
class Preparer:
    """Reads, renders and tokenises records with the tokenizer alone, so every line can be checked
    (`--on-error fail`) before the model weights load."""

    config: ScoreConfig
    tokenizer: Any

    @classmethod
    def load(cls, config: ScoreConfig) -> Preparer:
        return cls(config, load_scoring_tokenizer(config.model, config.trust_remote_code))

    def prepare(self, item: Record | BadLine) -> Prepared | Skipped:
        """Parse, render and tokenise one line, or say why it cannot be scored."""
        if isinstance(item, BadLine):
            return Skipped(item.line_no, item.record_id, item.reason, item.blank)
        try:
            conversation = to_conversation(item.data, self.config.field)
            rendered = render(conversation, self.tokenizer, self.config.tokens)
            encoded = encode(rendered, self.tokenizer, self.config.max_tokens)
        except FormatError as err:
            return Skipped(item.line_no, item.record_id, str(err))
        return Prepared(item, encoded)


def feature_row(component: Component, share: FeatureShare, position: int) -> dict[str, Any]:
    """A latent by its SAE index; a harmful direction by its position among the set's directions."""
    where = {"index": component.index} if isinstance(component, HarmfulFeature) else {"direction": position}
    row = {**where, "label": component.label, "contribution": round_score(share.contribution)}
    if share.above_benign is not None:
        row["above_benign"] = round_score(share.above_benign)
    return row


@dataclass
class Scorer:
    """The method plus what runs it: the model and the encoder truncated at the SAE's hook."""

    method: Method
    lm: LoadedModel
    encoder: FeatureEncoder

    @classmethod
    def load(cls, config: ScoreConfig, preparer: Preparer | None = None) -> Scorer:
        """Everything for scoring; `preparer` (already loaded to check the input) lends its tokenizer."""
        feature_set = load_feature_set(config.features_path)
        tokenizer = preparer.tokenizer if preparer is not None else None
        lm, sae = load_backbone(config, check_sae=feature_set.check_against, tokenizer=tokenizer)
        return cls(Method.load(config, sae, feature_set), lm, FeatureEncoder(lm, sae))

    @property
    def config(self) -> ScoreConfig:
        return self.method.config

    @property
    def preparer(self) -> Preparer:
        return Preparer(self.config, self.lm.tokenizer)

    def prepare(self, item: Record | BadLine) -> Prepared | Skipped:
        return self.preparer.prepare(item)

    def score_rows(self, prepared: Sequence[Prepared]) -> list[dict[str, Any]]:
        """Score rows (without rank/percentile) in the order given."""
        rows: list[dict[str, Any] | None] = [None] * len(prepared)
        proximity = torch.from_numpy(self.method.proximity.proximity)
        def step(samples: list[EncodedSample]) -> list[tuple[np.ndarray, np.ndarray]]:
            return self.encoder.summaries(samples, proximity, self.config.aggregation)

        encoded = [p.encoded for p in prepared]
        for batch, summaries in run_in_batches(encoded, step, self.config.batch_size, self.config.batch_tokens):
            for i, (aggregated, token_mass) in zip(batch, summaries, strict=True):
                rows[i] = self._row(prepared[i], aggregated, token_mass)
        return [row for row in rows if row is not None]

    def explain(self, prepared: Prepared) -> tuple[dict[str, Any], list[Word]]:
        """One record's score row and every word of its answers with its harmful mass."""
        proximity = torch.from_numpy(self.method.proximity.proximity)
        ((aggregated, token_mass),) = self.encoder.summaries([prepared.encoded], proximity, self.config.aggregation)
        encoded = prepared.encoded
        scored_positions = [p for p, flag in enumerate(encoded.scored) if flag]
        words = word_masses(encoded.text, encoded.answers, [encoded.offsets[p] for p in scored_positions],
                            [max(float(m), 0.0) for m in token_mass])
        return self._row(prepared, aggregated, token_mass), words

    def score_conversations(self, record: Record, conversations: Sequence[Conversation]) -> list[float]:
        """Scores of variants of one record (its answers edited), in order: what faithfulness checks
        rescore."""
        scores, prepared, owners = [0.0] * len(conversations), [], []
        for i, conversation in enumerate(conversations):
            try:
                rendered = render(conversation, self.lm.tokenizer, self.config.tokens)
                prepared.append(Prepared(record, encode(rendered, self.lm.tokenizer, self.config.max_tokens)))
                owners.append(i)
            except FormatError:  # nothing left to score: the score is 0
                continue
        for i, row in zip(owners, self.score_rows(prepared), strict=True):
            scores[i] = row["score"]
        return scores

    def contributions(self, samples: Sequence[EncodedSample], on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Each sample's split of its score over the harmful features [n, n_harmful]: what
        `features calibrate` averages over benign text."""
        n_harmful = len(self.method.feature_set.components)
        out = np.zeros((len(samples), n_harmful), dtype=np.float64)
        proximity = torch.from_numpy(self.method.proximity.proximity)
        def step(chosen: list[EncodedSample]) -> list[tuple[np.ndarray, np.ndarray]]:
            return self.encoder.summaries(chosen, proximity, self.config.aggregation)

        for batch, summaries in run_in_batches(samples, step, self.config.batch_size, self.config.batch_tokens, on_progress):
            for i, (aggregated, _) in zip(batch, summaries, strict=True):
                out[i] = sample_contributions(aggregated, self.method.proximity, n_harmful)
        return out

    def _row(self, prepared: Prepared, aggregated: np.ndarray, token_mass: np.ndarray) -> dict[str, Any]:
        result = score_summary(
            aggregated, token_mass, self.method.proximity, len(self.method.feature_set.components), self.config.top_n,
            self.method.benign_baseline,
        )
        encoded = prepared.encoded
        scored_positions = [p for p, flag in enumerate(encoded.scored) if flag]
        components, n_features = self.method.feature_set.components, len(self.method.feature_set.features)
        return {
            "line": prepared.record.line_no,
            "id": prepared.record.record_id,
            "score": round_score(result.score),
            "n_tokens": len(encoded.input_ids),
            "n_scored": encoded.n_scored,
            "truncated": encoded.truncated,
            "top_features": [feature_row(components[share.position], share, share.position - n_features)
                             for share in result.top_features],
            "top_tokens": [
                {
                    "position": scored_positions[t],
                    "token": self.lm.tokenizer.decode([encoded.input_ids[scored_positions[t]]]),
                    "mass": round(mass, 4),
                }
                for t, mass in result.top_tokens
            ],
            **explained_in_words(encoded, scored_positions, token_mass, self.config.top_n),
        }


def explained_in_words(encoded: EncodedSample, scored_positions: list[int], token_mass: np.ndarray,
                       top_n: int) -> dict[str, Any]:
    """The row's `top_words` (its heaviest words) and `top_spans` (the phrases around them, with
    character offsets into the answer) from its scored tokens' harmful mass (scoring/words.py)."""
    if not encoded.answers:
        return {"top_words": [], "top_spans": []}
    words = word_masses(encoded.text, encoded.answers, [encoded.offsets[p] for p in scored_positions],
                        [max(float(m), 0.0) for m in token_mass])
    answers = [encoded.text[start:end] for start, end in encoded.answers]
    return {
        "top_words": [{"word": w.text, "mass": round(w.mass, 4)} for w in top_words(words, top_n)],
        "top_spans": [{"turn": s.turn, "start": s.start, "end": s.end, "text": s.text, "peak": s.peak,
                       "mass": round(s.mass, 4)} for s in top_spans(words, answers)],
    }
