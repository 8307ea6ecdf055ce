"""Calibrate a feature set on benign text: a suggested check threshold, and each feature's benign
baseline for explanations.

Why both come from one pass: a threshold is only meaningful against the score distribution of
text that should pass, and an explanation is only informative when it says what a sample has
*beyond* what such text has. Both are properties of the (SAE, feature set, scoring settings) and
of the benign text, so they are stored in the feature set with the settings they hold for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from saefilter.errors import InputError
from saefilter.features.feature_set import FeatureSet


def calibrated(
    feature_set: FeatureSet, contributions: np.ndarray, scoring: dict[str, Any], source: str, percentile: float = 99.0
) -> FeatureSet:
    """The set with its threshold and benign baselines from `contributions` [n_benign, n_components]:
    row i is benign sample i's split of its score over the harmful latents, then the directions."""
    n_components = len(feature_set.components)
    if contributions.ndim != 2 or contributions.shape[1] != n_components:
        raise ValueError(f"contributions must be [n_benign, {n_components}], got {contributions.shape}")
    if len(contributions) == 0:
        raise InputError("calibration needs at least one usable benign sample")
    if not 0.0 < percentile < 100.0:
        raise InputError(f"--percentile must be between 0 and 100, got {percentile}")
    scores = contributions.sum(axis=1)
    baseline = contributions.mean(axis=0)
    n_features = len(feature_set.features)
    features = tuple(replace(f, benign_contribution=round(float(b), 6))
                     for f, b in zip(feature_set.features, baseline[:n_features], strict=True))
    directions = tuple(replace(d, benign_contribution=round(float(b), 6))
                       for d, b in zip(feature_set.directions, baseline[n_features:], strict=True))
    share = 100.0 - percentile
    meta = {
        **feature_set.meta,
        "suggested_threshold": {
            "value": round(float(np.percentile(scores, percentile)), 6),
            "how": f"{percentile:g}th percentile of the scores of {len(scores)} benign chats ({source}; "
                   f"aggregation={scoring['aggregation']}); about {share:g}% of benign chats like these would be flagged",
        },
        "benign_calibration": {**scoring, "rows": len(scores), "source": source},
    }
    return replace(feature_set, features=features, directions=directions, meta=meta)
