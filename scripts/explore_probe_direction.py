#!/usr/bin/env python
"""Development exploration for "harm, not form", round 4: a harmful *direction* beside the harmful latents.

On the mean residual at layer 16, a logistic probe trained on the 300 tuning pairs separates the
dev EM-model outputs at 0.82 (scripts/benchmark_scale_probes.py). Kept inside the source paper's
method, that probe is one more harmful direction: each latent's proximity to it is the cosine of
its decoder row with the probe's weight vector (in residual units), clipped at 0, and a sample's
score is the activation-weighted mean of that proximity, as for the harmful latents. Variants:
that score alone, and its z-score added with weight lambda to the shipped score's (both z-scored on
the benign tuning answers, selection data).

Reads the dev mean residuals of `benchmark_scale_probes.py collect` (SmolLM2, layer 16) for the
probe and the dev encodings of `benchmark_quality.py --split dev` for the scores. Own pairs are
cross-validated by pair (5 folds): the probe that scores a fold never saw it.

    python scripts/explore_probe_direction.py --store /root/saefilter_runs/scale_resid --lambdas 0.25,0.5,1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchmark_matched_ceiling import fit_probe, row_groups
from benchmark_quality import benchmark_sets, cache_key
from benchmark_scale_probes import folder_name, mean_residuals, scale_sets
from explore_probe_weights import SETS, metrics, pair_folds, report

from saefilter.config import ScoreConfig, resolve_features_path, resolve_sae_spec
from saefilter.features.feature_set import load_feature_set
from saefilter.sae.loading import load_sae, sae_fingerprint
from saefilter.scoring.proximity import feature_proximity, unit_rows

MODEL = "smollm2-135m-instruct"


def dev_encodings(cache: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The dev sets, and the embedded SAE's mean activations of their usable rows (clipped at 0) from
    the cache of `benchmark_quality.py --split dev`."""
    sets = benchmark_sets("dev", 500)
    fingerprint = sae_fingerprint(resolve_sae_spec("embedded"))
    acts, usable = {}, {}
    for name in SETS:
        stored = np.load(cache / cache_key(fingerprint, "dev", 500, name))
        acts[name], usable[name] = np.maximum(stored["mean_acts"], 0).astype(np.float64), stored["usable"]
    return sets, acts, usable


def probe_direction(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The probe's weights in residual units (it standardises its inputs), unit length."""
    probe = fit_probe(x, y, groups, 0)
    w = probe[-1].coef_[0] / probe[0].scale_
    return w / np.linalg.norm(w)


def share(acts: np.ndarray, proximity: np.ndarray) -> np.ndarray:
    return (acts @ proximity) / np.maximum(acts.sum(1), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--layer", type=int, default=16)
    parser.add_argument("--lambdas", default="0.25,0.5,1")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    args = parser.parse_args()
    scale_pairs = scale_sets("dev", 100, 100)["own pairs"]
    resid, resid_usable = mean_residuals(args.store / folder_name(MODEL, "dev", "own pairs"), args.layer)
    resid_y = scale_pairs.labels[resid_usable]
    resid_pairs = [p for p, u in zip(scale_pairs.pairs, resid_usable, strict=True) if u]

    sets, acts, usable = dev_encodings(args.cache)
    pairs_rows = [p for p, u in zip(sets["own pairs"].pairs, usable["own pairs"], strict=True) if u]
    if pairs_rows != resid_pairs:
        raise SystemExit("the residual store and the quality cache hold different own-pairs rows")
    decoder = load_sae(resolve_sae_spec("embedded")).sae.W_dec.detach().float().numpy()
    directions = unit_rows(decoder).astype(np.float64)
    shipped_set = load_feature_set(resolve_features_path("embedded"))
    config = ScoreConfig()
    shipped = feature_proximity(decoder, shipped_set.indices, shipped_set.weights, config.neighbours,
                                config.kernel).proximity.astype(np.float64)
    benign = sets["own pairs"].labels[usable["own pairs"]] == 0

    def variant_scores(w: np.ndarray, lam: float | None, reference: np.ndarray = benign) -> dict[str, np.ndarray]:
        near = np.maximum(directions @ w, 0.0)
        own = {n: share(a, near) for n, a in acts.items()}
        if lam is None:
            return own
        base = {n: share(a, shipped) for n, a in acts.items()}

        def z(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            ref = s["own pairs"][reference]
            return {n: (v - ref.mean()) / ref.std() for n, v in s.items()}

        zb, zo = z(base), z(own)
        return {n: zb[n] + lam * zo[n] for n in acts}

    folds = pair_folds(pairs_rows)
    groups = row_groups(scale_pairs, resid_usable, 0)
    w_all = probe_direction(resid, resid_y, groups)
    report("shipped set", {n: metrics(sets, usable, n, share(a, shipped)) for n, a in acts.items()})
    for lam in [None, *[float(v) for v in args.lambdas.split(",")]]:
        name = "probe direction alone" if lam is None else f"z(shipped) + {lam:g} z(probe direction)"
        row = {n: metrics(sets, usable, n, s) for n, s in variant_scores(w_all, lam).items()}
        cv = np.zeros(len(resid_y))
        for fold in range(folds.max() + 1):
            train = folds != fold
            w = probe_direction(resid[train], resid_y[train], groups[train])
            cv[~train] = variant_scores(w, lam, benign & train)["own pairs"][~train]
        row["own pairs"] = metrics(sets, usable, "own pairs", cv) | {"cross_validated": True}
        report(name, row)


if __name__ == "__main__":
    main()
