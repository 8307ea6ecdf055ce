#!/usr/bin/env python
"""Development exploration for "harm, not form", round 4: the supervised ceiling (scripts/
benchmark_matched_ceiling.py) reads the held-out own pairs at 0.99 from the same SAE latents, trained
on the tuning pairs alone, where the shipped geometric score reaches 0.85. Which part of the gap is
the score's form, and which the selection?

Each variant keeps the source paper's method (a sample's score from the proximity of its active
latents' decoder directions to a set of harmful directions) and changes one thing:
- the normalisation: the share of activation near the harmful set (shipped), or the harmful mass
  itself (no division by the total activation);
- the harmful set and its weights: the shipped selection, the shipped selection less the latents
  whose labels are mostly function words (scikit-learn's English stop-word list), or the latents a non-negative sparse
  linear fit on the tuning pairs (Lasso, positive coefficients only) puts weight on, with those
  coefficients as weights.
For reference, not the method: the ceiling's logistic probe on the tuning pairs (standardised
latents, L2, C = 3.16 as its cross-validation chose), signed, and its positive and negative parts
alone (does the readout rest on latents that speak for harm, or on ones that speak for benign?).

Reads the dev encodings of scripts/benchmark_quality.py (run it with --split dev first). Own pairs
are cross-validated by pair (5 folds): a fit never scores the pairs it saw.

    python scripts/explore_probe_weights.py --alphas 0.001,0.003,0.01
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from benchmark_quality import benchmark_sets, cache_key
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.preprocessing import StandardScaler

from saefilter.config import ScoreConfig, resolve_features_path, resolve_sae_spec
from saefilter.evaluation.evaluate import complete_pairs
from saefilter.evaluation.metrics import auroc, pairwise_accuracy
from saefilter.features.feature_set import load_feature_set
from saefilter.sae.loading import load_sae, sae_fingerprint
from saefilter.scoring.proximity import feature_proximity

SETS = ("own pairs", "EM-model outputs", "HH-RLHF harmless", "ToxiGen same-group", "insecure vs secure",
        "harmful vs benign (form-confounded)", "mixed_chat")


def proximity_of(decoder: np.ndarray, indices: list[int], weights: list[float]) -> np.ndarray:
    config = ScoreConfig()
    return feature_proximity(decoder, indices, weights, config.neighbours, config.kernel).proximity.astype(np.float64)


def scores(acts: np.ndarray, proximity: np.ndarray, normalised: bool) -> np.ndarray:
    acts = np.maximum(acts, 0).astype(np.float64)
    mass = acts @ proximity
    if not normalised:
        return mass
    totals = acts.sum(1)
    return np.divide(mass, totals, out=np.zeros(len(acts)), where=totals > 0)


def lasso_set(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[list[int], list[float]]:
    """Latents with a positive coefficient in a non-negative Lasso of the label on the activations,
    scaled so that the largest weight is 1."""
    scale = np.maximum(x.std(0), 1e-6)
    fit = Lasso(alpha=alpha, positive=True, max_iter=20000).fit(x / scale, y)
    coef = fit.coef_ / scale
    chosen = np.flatnonzero(coef > 0)
    return chosen.tolist(), (coef[chosen] / coef[chosen].max()).tolist()


def function_word_labelled(label: str) -> bool:
    """At least half of the label's words are stop words or not words at all ('.', '(')."""
    words = re.findall(r"'(.*?)'(?=, '|$)", label)
    function = [w for w in words if w.strip().lower() in ENGLISH_STOP_WORDS or not any(c.isalpha() for c in w)]
    return bool(words) and 2 * len(function) >= len(words)


def pair_folds(pairs: list, n_folds: int = 5) -> np.ndarray:
    ids = sorted({p for p in pairs if p is not None})
    fold_of = {p: i % n_folds for i, p in enumerate(np.random.default_rng(0).permutation(ids))}
    return np.array([fold_of[p] for p in pairs])


def metrics(sets, usable, name: str, s: np.ndarray) -> dict:
    data = sets[name]
    y = data.labels[usable[name]]
    row = {"auroc": auroc(s, y)}
    kept = [p for p, u in zip(data.pairs, usable[name], strict=True) if u]
    if any(p is not None for p in kept):
        h, b = complete_pairs(kept, y)
        row["pairwise"] = pairwise_accuracy(s[h], s[b])
    if name == "mixed_chat":
        row["all_harmful_first"] = bool(s[y == 1].min() > s[y == 0].max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alphas", default="0.001,0.003,0.01")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/explore_probe_weights.json"))
    args = parser.parse_args()
    sets = benchmark_sets("dev", 500)
    fingerprint = sae_fingerprint(resolve_sae_spec("embedded"))
    acts, usable = {}, {}
    for name in SETS:
        stored = np.load(args.cache / cache_key(fingerprint, "dev", 500, name))
        acts[name], usable[name] = stored["mean_acts"], stored["usable"]
    decoder = load_sae(resolve_sae_spec("embedded")).sae.W_dec.detach().float().numpy()
    shipped = load_feature_set(resolve_features_path("embedded"))
    pairs_x, pairs_y = acts["own pairs"], sets["own pairs"].labels[usable["own pairs"]]
    folds = pair_folds([p for p, u in zip(sets["own pairs"].pairs, usable["own pairs"], strict=True) if u])

    variants: dict[str, tuple[list[int], list[float]]] = {"shipped set": (shipped.indices, shipped.weights)}
    content = [f for f in shipped.features if not function_word_labelled(f.label)]
    variants["shipped set less function-word labels"] = ([f.index for f in content], [f.weight for f in content])
    for alpha in [float(a) for a in args.alphas.split(",")]:
        variants[f"lasso+ alpha {alpha:g}"] = lasso_set(pairs_x, pairs_y, alpha)
    results = {}
    for variant, (indices, weights) in variants.items():
        proximity = proximity_of(decoder, indices, weights)
        for normalised in (True, False):
            name = f"{variant}, {'share' if normalised else 'mass'} ({len(indices)} latents)"
            row = {n: metrics(sets, usable, n, scores(acts[n], proximity, normalised)) for n in SETS}
            if variant.startswith("lasso"):  # own pairs: refit without each fold
                cv = np.zeros(len(pairs_y))
                alpha = float(variant.split()[-1])
                for fold in range(folds.max() + 1):
                    train = folds != fold
                    fold_set = lasso_set(pairs_x[train], pairs_y[train], alpha)
                    cv[~train] = scores(pairs_x[~train], proximity_of(decoder, *fold_set), normalised)
                row["own pairs"] = metrics(sets, usable, "own pairs", cv) | {"cross_validated": True}
            results[name] = row
            report(name, row)
    for part in ("signed", "positive part", "negative part"):
        probe_scores = probe_part(pairs_x, pairs_y, part)
        row = {n: metrics(sets, usable, n, probe_scores(acts[n])) for n in SETS}
        cv = np.zeros(len(pairs_y))
        for fold in range(folds.max() + 1):
            train = folds != fold
            cv[~train] = probe_part(pairs_x[train], pairs_y[train], part)(pairs_x[~train])
        row["own pairs"] = metrics(sets, usable, "own pairs", cv) | {"cross_validated": True}
        results[f"probe on the pairs, {part}"] = row
        report(f"probe on the pairs, {part}", row)
    args.out.write_text(json.dumps(results, indent=1))


def probe_part(x: np.ndarray, y: np.ndarray, part: str):
    scaler = StandardScaler().fit(x)
    beta = LogisticRegression(C=3.16, max_iter=5000).fit(scaler.transform(x), y).coef_[0]
    beta = {"signed": beta, "positive part": np.maximum(beta, 0), "negative part": np.minimum(beta, 0)}[part]
    return lambda a: scaler.transform(a) @ beta


def report(name: str, row: dict) -> None:
    cells = " ".join(f"{n.split()[0]} {v['auroc']:.3f}" + (f"/{v['pairwise']:.3f}" if "pairwise" in v else "")
                     for n, v in row.items())
    print(f"{name}: {cells} mixed-all-first {row['mixed_chat']['all_harmful_first']}", flush=True)


if __name__ == "__main__":
    main()
