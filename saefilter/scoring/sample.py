"""Score one sample from its SAE activations: pure NumPy, no model, no I/O.

With a_i the sample's activation of latent i aggregated over its scored tokens (max or mean),

    score = sum_i a_i * proximity_i / sum_i a_i

the activation-weighted mean proximity of the sample's active features to the harmful set.
The score splits exactly into contributions of the harmful features (through the kNN terms),
which is what `top_features` reports, and into per-token harmful mass for highlighting.

A feature set calibrated on benign text (`saefilter features calibrate`) carries each feature's
mean contribution there. With it, `top_features` ranks by the contribution *above* that benign
baseline: a latent that gives every answer some score (a topic or sentence-start latent) then does
not lead every explanation, and what leads is what this sample has that benign text does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from saefilter.sae.geometry import FeatureProximity

SCORE_DECIMALS = 6  # enough to rank; few enough that batch-size float noise never shows


def round_score(value: float) -> float:
    """A score or contribution as score files hold it."""
    return round(float(value), SCORE_DECIMALS)


Aggregation = Literal["max", "mean"]  # how a latent's activations combine over a sample's tokens


class FeatureShare(NamedTuple):
    position: int  # in the harmful set
    contribution: float  # to the score; the contributions of all harmful features sum to it
    above_benign: float | None = None  # contribution minus its benign baseline, when calibrated


@dataclass(frozen=True)
class SampleScore:
    score: float
    top_features: list[FeatureShare]
    top_tokens: list[tuple[int, float]]  # (index among scored tokens, harmful mass)


def harmful_contributions(acts: np.ndarray, prox: FeatureProximity, n_harmful: int) -> np.ndarray:
    """Split sum_i a_i * proximity_i over the harmful features each latent is near."""
    active = np.flatnonzero(acts > 0)
    contributions = np.zeros(n_harmful, dtype=np.float64)
    weighted = acts[active, None].astype(np.float64) * prox.terms[active]
    np.add.at(contributions, prox.neighbours[active].ravel(), weighted.ravel())
    return contributions


def sample_contributions(aggregated: np.ndarray, prox: FeatureProximity, n_harmful: int) -> np.ndarray:
    """Each harmful feature's share of the score [n_harmful]; they sum to the score."""
    acts = np.maximum(aggregated, 0.0)
    total = float(acts.sum(dtype=np.float64))
    if total <= 0.0:
        return np.zeros(n_harmful, dtype=np.float64)
    return harmful_contributions(acts, prox, n_harmful) / total


def top_shares(contributions: np.ndarray, top_n: int, baseline: np.ndarray | None = None) -> list[FeatureShare]:
    """The features that explain a score: by contribution, or, with a benign baseline [n_harmful],
    by contribution above it (only those above it)."""
    if baseline is None:
        order = np.argsort(-contributions, kind="stable")[:top_n]
        return [FeatureShare(int(j), float(contributions[j])) for j in order if contributions[j] > 0]
    above = contributions - baseline
    order = np.argsort(-above, kind="stable")[:top_n]
    return [FeatureShare(int(j), float(contributions[j]), float(above[j])) for j in order if above[j] > 0]


def score_summary(
    aggregated: np.ndarray, token_mass: np.ndarray, prox: FeatureProximity, n_harmful: int, top_n: int = 5,
    baseline: np.ndarray | None = None,
) -> SampleScore:
    """The score from what it needs of a sample: its aggregated activations [d_sae] and each token's
    harmful mass (activations @ proximity, [tokens]). The scorer computes both batched on the
    model's device, so the dense [tokens, d_sae] matrix never has to reach NumPy."""
    contributions = sample_contributions(aggregated, prox, n_harmful)
    if not contributions.any():  # nothing active, or nothing near the harmful set: no feature or token explains it
        return SampleScore(0.0, [], [])
    score = float(contributions.sum())
    top_features = top_shares(contributions, top_n, baseline)
    token_order = np.argsort(-token_mass, kind="stable")[:top_n]
    top_tokens = [(int(t), float(token_mass[t])) for t in token_order if token_mass[t] > 0]
    return SampleScore(score, top_features, top_tokens)
