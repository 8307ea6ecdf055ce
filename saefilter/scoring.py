"""Score one sample from its SAE activations: pure NumPy, no model, no I/O.

With a_i the sample's activation of latent i aggregated over its scored tokens (max or mean),

    score = sum_i a_i * proximity_i / sum_i a_i

the activation-weighted mean proximity of the sample's active features to the harmful set.
The score splits exactly into contributions of the harmful features (through the kNN terms),
which is what `top_features` reports, and into per-token harmful mass for highlighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from saefilter.proximity import FeatureProximity

Aggregation = Literal["max", "mean"]


@dataclass(frozen=True)
class SampleScore:
    score: float
    top_features: list[tuple[int, float]]  # (position in the harmful set, contribution to score)
    top_tokens: list[tuple[int, float]]  # (index among scored tokens, harmful mass)


def aggregate(token_acts: np.ndarray, how: Aggregation) -> np.ndarray:
    """[tokens, d_sae] -> [d_sae]."""
    if token_acts.shape[0] == 0:
        return np.zeros(token_acts.shape[1], dtype=np.float32)
    if how == "max":
        return token_acts.max(axis=0)
    if how == "mean":
        return token_acts.mean(axis=0)
    raise ValueError(f"unknown aggregation {how!r}")


def harmful_contributions(acts: np.ndarray, prox: FeatureProximity, n_harmful: int) -> np.ndarray:
    """Split sum_i a_i * proximity_i over the harmful features each latent is near."""
    active = np.flatnonzero(acts > 0)
    contributions = np.zeros(n_harmful, dtype=np.float64)
    weighted = acts[active, None].astype(np.float64) * prox.terms[active]
    np.add.at(contributions, prox.neighbours[active].ravel(), weighted.ravel())
    return contributions


def score_sample(
    token_acts: np.ndarray, prox: FeatureProximity, how: Aggregation, n_harmful: int, top_n: int = 5
) -> SampleScore:
    """The score of one sample from its [tokens, d_sae] activations."""
    return score_summary(aggregate(token_acts, how), token_acts @ prox.proximity, prox, n_harmful, top_n)


def score_summary(
    aggregated: np.ndarray, token_mass: np.ndarray, prox: FeatureProximity, n_harmful: int, top_n: int = 5
) -> SampleScore:
    """The score from what it needs of a sample: its aggregated activations [d_sae] and each token's
    harmful mass (activations @ proximity, [tokens]). The scorer computes both batched on the
    model's device, so the dense [tokens, d_sae] matrix never has to reach NumPy."""
    acts = np.maximum(aggregated, 0.0)
    total = float(acts.sum(dtype=np.float64))
    if total <= 0.0:
        return SampleScore(0.0, [], [])
    contributions = harmful_contributions(acts, prox, n_harmful) / total
    score = float(contributions.sum())
    order = np.argsort(-contributions, kind="stable")[:top_n]
    top_features = [(int(j), float(contributions[j])) for j in order if contributions[j] > 0]
    token_order = np.argsort(-token_mass, kind="stable")[:top_n]
    top_tokens = [(int(t), float(token_mass[t])) for t in token_order if token_mass[t] > 0]
    return SampleScore(score, top_features, top_tokens)
