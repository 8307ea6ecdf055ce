"""A sample's score from its aggregated SAE features, by each method the project compares, vectorised
over many samples: the geometric score (what `saefilter score` computes one sample at a time in
scoring/sample.py), direct SAE mass (the harmful latents' activation, no geometry) and
representation matching (He, Xia, Henderson 2024: cosine to harmful anchors). The LLM judge is in
scoring/judge.py."""

from __future__ import annotations

import numpy as np

from saefilter.sae.geometry import unit_rows


def geometric_scores(acts: np.ndarray, proximity: np.ndarray) -> np.ndarray:
    """The geometric score of each row of aggregated activations (`scoring.sample.score_summary`'s)."""
    acts = np.maximum(acts, 0).astype(np.float64)
    totals = acts.sum(1)
    return np.divide(acts @ proximity.astype(np.float64), totals, out=np.zeros(len(acts)), where=totals > 0)


def excess_over_dataset(acts: np.ndarray) -> np.ndarray:
    """Each latent's activation above its mean over the dataset being scored (no labels used):
    what is distinctive about a sample within its dataset, rather than what all samples share."""
    return np.maximum(acts - acts.mean(0, keepdims=True), 0.0)


def direct_scores(acts: np.ndarray, harmful: list[int], weights: list[float]) -> np.ndarray:
    acts = np.maximum(acts, 0).astype(np.float64)
    totals = acts.sum(1)
    mass = acts[:, harmful] @ np.asarray(weights, dtype=np.float64)
    return np.divide(mass, totals, out=np.zeros(len(acts)), where=totals > 0)


def representation_matching(mean_residual: np.ndarray, anchors: np.ndarray, top_n: int) -> np.ndarray:
    similarity = unit_rows(mean_residual) @ unit_rows(anchors).T
    top_n = min(top_n, anchors.shape[0])
    return np.sort(similarity, axis=1)[:, -top_n:].mean(1).astype(np.float64)
