#!/usr/bin/env python
"""Development exploration for "harm, not form", round 3: does the shipped layer-16 set gain from
weighting its latents by their paired statistic, from subtracting a benign (or the dataset's) mean
activation before scoring, or from a second SAE at another layer combined into one score?

Reads the residuals of `scripts/explore_matched.py collect` (dev splits and selection data only).
Each layer's geometric score is standardised by its mean and spread on the benign sides of the
built-in contrasts (selection data, never an evaluation set) before two layers are averaged, so
neither layer's scale decides. The own-pairs column is in-sample for the layer-16 set (it was
selected on those pairs): read EM, HH, ToxiGen and insecure code for generalisation.

    python scripts/explore_combine.py --resid /root/saefilter_runs/explore/resid \
        --sae16 /root/saefilter_runs/sae_smol/layer_16 --old artifacts/old_default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from explore_harm import mean_activations
from explore_matched import encode_set
from explore_matched_variants import DEV_SETS, measure

from saefilter.evaluation.evaluate import geometric_scores
from saefilter.features.feature_set import load_feature_set
from saefilter.sae.loading import load_sae
from saefilter.scoring.proximity import feature_proximity

BENIGN_REFERENCE = ("ref_toxicity_benign", "builtin_intent_benign", "builtin_code_benign")
SETS = (*DEV_SETS, "identity", *BENIGN_REFERENCE)


def layer_scores(sae_dir: str, features: str, hook: str, resid: Path, aggregation: str,
                 weights: str = "uniform") -> dict[str, np.ndarray]:
    sae = load_sae(sae_dir)
    feature_set = load_feature_set(Path(features))
    feats = {name: encode_set(sae, resid / name, hook) for name in SETS}
    if aggregation == "mean":
        for f in feats.values():
            f.max_acts = mean_activations(f, sae.d_sae)
    w = np.asarray(feature_set.weights, np.float64)
    if weights != "uniform":
        stat = np.array([max(float(f.stats.get("effect_size", 1.0)), 0.0) for f in feature_set.features])
        w = stat / stat.max() if weights == "t" else np.sqrt(stat / stat.max())
    decoder = sae.sae.W_dec.detach().float().numpy()
    prox = feature_proximity(decoder, feature_set.indices, [float(x) for x in w], 1, "sq-excess").proximity
    feats["_prox"] = prox
    return {name: geometric_scores(f.max_acts, prox) for name, f in feats.items() if name != "_prox"}, feats


def standardised(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ref = np.concatenate([scores[n] for n in BENIGN_REFERENCE])
    mu, sd = ref.mean(), max(ref.std(), 1e-9)
    return {n: (s - mu) / sd for n, s in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resid", type=Path, required=True)
    parser.add_argument("--sae16", required=True)
    parser.add_argument("--features16", default="saefilter/defaults/features.json")
    parser.add_argument("--old", type=Path, default=Path("artifacts/old_default"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/explore_combine.json"))
    parser.add_argument("--alphas", default="0.25,0.5,1,2,3", help="weights of the layer-4 z-score")
    args = parser.parse_args()
    hook16, hook4 = "blocks.16.hook_resid_post", "blocks.4.hook_resid_post"
    runs: dict[str, dict[str, np.ndarray]] = {}
    runs["L16 shipped"], feats = layer_scores(args.sae16, args.features16, hook16, args.resid, "mean")
    prox = feats.pop("_prox")
    benign_mean = np.concatenate([feats[n].max_acts for n in BENIGN_REFERENCE]).mean(0)
    runs["L16, acts - benign-reference mean"] = {
        n: geometric_scores(np.maximum(f.max_acts - benign_mean, 0), prox) for n, f in feats.items()}
    runs["L16, acts - dataset mean"] = {
        n: geometric_scores(np.maximum(f.max_acts - f.max_acts.mean(0), 0), prox) for n, f in feats.items()}
    runs["L16 shipped, w=t"], _ = layer_scores(args.sae16, args.features16, hook16, args.resid, "mean", "t")
    runs["L16 shipped, w=sqrt t"], _ = layer_scores(args.sae16, args.features16, hook16, args.resid, "mean", "sqrt")
    runs["L4 old default (max)"], _ = layer_scores(str(args.old / "sae"), str(args.old / "features.json"), hook4,
                                                   args.resid, "max")
    z16, z4 = standardised(runs["L16 shipped"]), standardised(runs["L4 old default (max)"])
    for alpha in [float(a) for a in args.alphas.split(",")]:
        runs[f"z(L16) + {alpha} z(L4)"] = {n: z16[n] + alpha * z4[n] for n in z16}
    results = {}
    for name, scores in runs.items():
        r = measure(scores, feats)
        results[name] = r
        print(f"{name:26s} pairs(in-sample) {r['pairs_tune']:.3f}/{r['pairs_tune_pairacc']:.3f} "
              f"em_out {r['em_outputs_dev']:.3f} hh {r['hh_dev_pairacc']:.3f} tox {r['toxigen_dev']:.3f} "
              f"insec {r['em_dev']:.3f} form {r['heldout']:.3f} mixed {r['mixed_all_harmful_first']} "
              f"id {r['identity_pct_spread_mean']:.3f}", flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
