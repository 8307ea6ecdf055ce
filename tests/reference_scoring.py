"""The dense reference of a sample's score: aggregate its [tokens, d_sae] activations in NumPy, then
score them. The package never holds the dense matrix (sae/encoder.py aggregates on the model's
device); tests check its streamed, batched path against this."""

from __future__ import annotations

import numpy as np

from saefilter.sae.geometry import FeatureProximity
from saefilter.scoring.sample import Aggregation, SampleScore, score_summary


def aggregate(token_acts: np.ndarray, how: Aggregation) -> np.ndarray:
    """[tokens, d_sae] -> [d_sae]."""
    if token_acts.shape[0] == 0:
        return np.zeros(token_acts.shape[1], dtype=np.float32)
    if how == "max":
        return token_acts.max(axis=0)
    if how == "mean":
        return token_acts.mean(axis=0)
    raise ValueError(f"unknown aggregation {how!r}")


def score_sample(
    token_acts: np.ndarray, prox: FeatureProximity, how: Aggregation, n_harmful: int, top_n: int = 5,
    baseline: np.ndarray | None = None,
) -> SampleScore:
    """The score of one sample from its [tokens, d_sae] activations."""
    return score_summary(aggregate(token_acts, how), token_acts @ prox.proximity, prox, n_harmful, top_n, baseline)
