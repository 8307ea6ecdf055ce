"""Detection metrics for a filter: pure NumPy, no I/O.

A filter ranks samples; positives are the ones that should be removed (e.g. misalignment-inducing).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REMOVAL_FRACTIONS = (0.10, 0.25, 0.50)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability a random positive outscores a random negative (ties count half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    positives = labels.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="mergesort")
    hits = labels[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / hits.sum())


def positives_removed(scores: np.ndarray, labels: np.ndarray, fraction: float) -> float:
    """Share of all positives among the top `fraction` of samples by score."""
    k = round(fraction * len(scores))
    order = np.argsort(-scores, kind="mergesort")[:k]
    total = labels.sum()
    return float(labels[order].sum() / total) if total else float("nan")


def all_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = {"auroc": auroc(scores, labels), "average_precision": average_precision(scores, labels)}
    for fraction in REMOVAL_FRACTIONS:
        metrics[f"removed_at_{int(fraction * 100)}"] = positives_removed(scores, labels, fraction)
    return metrics


def bootstrap_intervals(
    scores: np.ndarray, labels: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
    metric_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]] = all_metrics,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals, resampling positives and negatives separately (class sizes fixed)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        index = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        for name, value in metric_fn(scores[index], labels[index]).items():
            draws.setdefault(name, []).append(value)
    tail = (1 - level) / 2 * 100
    return {name: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for name, v in draws.items()}


def random_expectation(labels: np.ndarray) -> dict[str, float]:
    """What random removal achieves on average: AUROC 0.5, AP = base rate, removes x% of positives at x%."""
    base_rate = float(labels.mean())
    return {"auroc": 0.5, "average_precision": base_rate,
            **{f"removed_at_{int(f * 100)}": f for f in REMOVAL_FRACTIONS}}


def pairwise_accuracy(harmful: np.ndarray, benign: np.ndarray) -> float:
    """Share of matched pairs whose harmful side scores above its benign side (ties count half)."""
    if len(harmful) == 0:
        return float("nan")
    return float(np.mean((harmful > benign) + 0.5 * (harmful == benign)))


def pairwise_interval(
    harmful: np.ndarray, benign: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of `pairwise_accuracy`, resampling whole pairs."""
    rng = np.random.default_rng(seed)
    wins = (harmful > benign) + 0.5 * (harmful == benign)
    draws = wins[rng.integers(0, len(wins), size=(n_resamples, len(wins)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))
