"""A harmful direction from paired answers: the weight vector of a logistic probe on mean residuals.

Why: with the prompt held fixed, the residual stream at the SAE's layer carries the harm of an
answer better than any set of SAE latents selected here (a probe on the embedded model's
layer-16 mean residual, trained on the 300 tuning pairs, separates the EM-model outputs at 0.82 on
dev, against the latents' lower numbers; docs/log.md has the comparison). Kept inside the source paper's method, the probe's weight vector becomes
one more harmful direction: each latent's proximity to it is the cosine of its decoder row with it
(clipped at 0), and a sample's score is still the activation-weighted proximity of its latents.

Hard negatives: benign answers *about* dark topics (a battle, an overdose, a scam) join the benign side
of the probe, not of the weight. Paired answers hold the topic fixed, so a probe on them alone is
free to lean on what harmful answers share with any text on a dark subject; with the hard
negatives it has to find what separates harm from the topic too.

The direction's weight sets how much it counts beside the harmful latents: `ratio` times the
spread of the latents' part of the score over its own spread, both on the benign side of the
contrast, i.e. the sum of the two parts' z-scores (ratio 1: equal footing), as one proximity.
Pure numerics (torch for the fit, NumPy otherwise); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from saefilter.features.feature_set import FeatureSet, HarmfulDirection
from saefilter.sae.geometry import clipped_cosines

DEFAULT_C = 0.03  # inverse L2 strength on standardised residuals (5-fold CV on the 300 tuning pairs chose 0.0316)


def probe_direction(x: np.ndarray, y: np.ndarray, c: float = DEFAULT_C, max_iter: int = 500) -> np.ndarray:
    """Unit weight vector (in residual units) of an L2 logistic regression of y on standardised x:
    minimise sum(log-loss) * c + |w|^2 / 2, the usual parametrisation of C."""
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be [n, d] with one label per row, got {x.shape} and {len(y)} labels")
    if not (0 < int(np.sum(y)) < len(y)):
        raise ValueError("the probe needs both harmful and benign rows")
    mean, scale = x.mean(0), np.maximum(x.std(0), 1e-6)
    z = torch.from_numpy(((x - mean) / scale).astype(np.float64))
    target = torch.from_numpy(np.asarray(y, np.float64))
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = c * torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target, reduction="sum") + 0.5 * (w @ w)
        loss.backward()
        return loss

    optimiser.step(objective)
    weights = w.detach().numpy() / scale
    norm = float(np.linalg.norm(weights))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("the probe found no direction (its weights are all zero)")
    return weights / norm


def direction_weight(latent_part: np.ndarray, direction_part: np.ndarray, ratio: float = 1.0) -> float:
    """The weight that puts the direction's part of the score (`direction_part`, its benign scores at
    weight 1) on `ratio` times the footing of the harmful latents' part (`latent_part`)."""
    if ratio <= 0:
        raise ValueError(f"the ratio must be positive, got {ratio}")
    spread = float(np.std(direction_part))
    if spread == 0.0:
        raise ValueError("the direction's part of the score does not vary on the benign rows")
    return ratio * float(np.std(latent_part)) / spread


def fitted_direction(
    harmful_residuals: np.ndarray, benign_residuals: np.ndarray, benign_acts: np.ndarray, latent_proximity: np.ndarray,
    decoder: np.ndarray, c: float = DEFAULT_C, ratio: float = 1.0, hard_negative_residuals: np.ndarray | None = None,
) -> tuple[np.ndarray, float, dict]:
    """The probe direction of harmful vs benign (and hard-negative) mean residuals [n, d_in], and its
    weight against the harmful latents' part of the score (`latent_proximity` [d_sae]) on the benign
    aggregated activations `benign_acts` [n_benign, d_sae] (the answers the score will meet, not the
    hard negatives)."""
    hard = np.zeros((0, harmful_residuals.shape[1]), harmful_residuals.dtype) if hard_negative_residuals is None \
        else hard_negative_residuals
    x = np.concatenate([harmful_residuals, benign_residuals, hard])
    y = np.concatenate([np.ones(len(harmful_residuals)), np.zeros(len(benign_residuals) + len(hard))])
    direction = probe_direction(x, y, c)
    acts = np.maximum(benign_acts, 0).astype(np.float64)
    totals = np.maximum(acts.sum(1), 1e-12)
    latent_part = acts @ latent_proximity / totals
    direction_part = acts @ clipped_cosines(decoder, direction[None, :])[:, 0] / totals
    weight = direction_weight(latent_part, direction_part, ratio)
    stats = {"c": c, "ratio": ratio, "harmful_rows": len(harmful_residuals), "benign_rows": len(benign_residuals),
             "hard_negative_rows": len(hard),
             "train_separation": float(np.mean(x[y == 1] @ direction) - np.mean(x[y == 0] @ direction))}
    return direction, weight, stats


@dataclass(frozen=True)
class DirectionSettings:
    """How a direction is fitted, and the scoring settings its weight is measured under (those
    `saefilter score` will use: the weight balances the two parts of that score)."""

    aggregation: str  # of the latents over a sample's tokens
    neighbours: int
    kernel: str
    c: float = DEFAULT_C
    ratio: float = 1.0
    label: str | None = None


def with_direction(
    feature_set: FeatureSet, harmful_residuals: np.ndarray, benign_residuals: np.ndarray, benign_acts: np.ndarray,
    decoder: np.ndarray, hook: str, source: str, settings: DirectionSettings,
    hard_negative_residuals: np.ndarray | None = None,
) -> FeatureSet:
    """`feature_set`'s latents with the fitted direction as its one direction (replacing any), and its
    benign calibration dropped: the scores change, so `features calibrate` must run again.
    `benign_acts` are the benign rows' latents aggregated as `settings.aggregation` says."""
    latents_only = replace(feature_set, directions=())
    latent_proximity = latents_only.proximity(decoder, settings.neighbours, settings.kernel).proximity
    vector, weight, stats = fitted_direction(harmful_residuals, benign_residuals, benign_acts, latent_proximity, decoder,
                                             settings.c, settings.ratio, hard_negative_residuals)
    direction = HarmfulDirection(settings.label or f"probe: harmful vs benign answers ({source})",
                                 tuple(float(v) for v in vector), weight,
                                 {**stats, "source": source, "hook": hook, "aggregation": settings.aggregation,
                                  "neighbours": settings.neighbours, "kernel": settings.kernel})
    meta = {k: v for k, v in latents_only.meta.items() if k not in ("benign_calibration", "suggested_threshold")}
    features = tuple(replace(f, benign_contribution=None) for f in latents_only.features)
    return replace(latents_only, features=features, directions=(direction,), meta=meta)
