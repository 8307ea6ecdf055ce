#!/usr/bin/env python
"""Several SAEs at different layers combined into one score: does it follow harm better than one?

Each component is SAE:FEATURES (scored as `saefilter score` scores, max aggregation, the default
kernel); a row's combined score is the mean over components of its score standardised by that
component's mean and standard deviation on benign calibration chats (the benign answers of the
built-in `answers` contrast: label-free with respect to every benchmark). Every benchmark of
benchmark_quality.py on the chosen split, single components beside their combination.

    python scripts/explore_multilayer.py --component embedded:embedded \\
        --component artifacts/sae/layer_16:artifacts/cand16/features.json --split dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_quality import LabelledSet, aggregated, benchmark_sets, cache_key, markdown, measure

from saefilter.config import DEFAULT_KERNEL, ScoreConfig, resolve_features_path, resolve_sae_spec
from saefilter.evaluation.evaluate import geometric_scores
from saefilter.features.feature_set import load_feature_set
from saefilter.inputs.reference import builtin_contrasts, read_reference
from saefilter.model.activations import FeatureEncoder
from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.loading import load_sae
from saefilter.scoring.proximity import feature_proximity


def component_scores(spec: str, sets: dict[str, LabelledSet], calibration: LabelledSet, split: str, limit: int,
                     cache: Path, lm) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], tuple[float, float]]:
    sae_spec, _, features_spec = spec.rpartition(":")
    loaded = load_sae(resolve_sae_spec(sae_spec))
    feature_set = load_feature_set(resolve_features_path(features_spec))
    proximity = feature_proximity(loaded.sae.W_dec.detach().float().numpy(), feature_set.indices, feature_set.weights,
                                  ScoreConfig().neighbours, DEFAULT_KERNEL).proximity
    encoder = FeatureEncoder(lm, loaded)
    scores, usable = {}, {}
    for name, data in {**sets, "calibration": calibration}.items():
        acts, usable[name] = aggregated(encoder, data, cache / cache_key(loaded.fingerprint, split if name != "calibration" else "all", limit, name))
        scores[name] = geometric_scores(acts, proximity)
    calib = scores.pop("calibration")
    usable.pop("calibration")
    return scores, usable, (float(calib.mean()), float(calib.std()) or 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--component", action="append", required=True, help="SAE:FEATURES")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--output", "-o", type=Path, default=None)
    args = parser.parse_args()
    sets = benchmark_sets(args.split, args.limit)
    benign = [c for c in read_reference(builtin_contrasts(["answers"])[0].benign)]
    calibration = LabelledSet(benign, np.zeros(len(benign)), [None] * len(benign), [None] * len(benign))
    lm = load_model(DEFAULT_MODEL, device="auto", dtype="float32")
    parts = [component_scores(spec, sets, calibration, args.split, args.limit, args.cache, lm) for spec in args.component]
    usable = parts[0][1]
    if any(any((u[n] != usable[n]).any() for n in usable) for _, u, _ in parts):
        raise SystemExit("components disagree on which rows are usable (different tokenizers?)")
    results = {}
    for spec, (scores, _, _) in zip(args.component, parts, strict=True):
        results[spec] = measure(sets, scores, usable, args.bootstrap)
    combined = {name: np.mean([(s[name] - mu) / sd for s, _, (mu, sd) in parts], axis=0) for name in sets}
    results["combined (mean of calibrated z)"] = measure(sets, combined, usable, args.bootstrap)
    table = markdown(results)
    print(table)
    if args.output:
        args.output.write_text(json.dumps({"components": args.component, "split": args.split, "results": results, "table": table}, indent=1))


if __name__ == "__main__":
    main()
