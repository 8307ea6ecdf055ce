#!/usr/bin/env python
"""Fast exploration of scoring and selection variants on cached activations (development split).

Encodes the reference select-splits and the em dev rows once per SAE (cached as .npz under
artifacts/explore/), then evaluates many variants in seconds: feature-selection criteria,
proximity kernels, aggregations. Only the dev split is used here; BENCHMARKS.md reports the
chosen configuration on the test split with `saefilter eval`.

    python scripts/explore_scoring.py --sae artifacts/sae/layer_4 --limit 250
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saefilter.activations import FeatureEncoder
from saefilter.config import ScoreConfig
from saefilter.evaluate import collect, geometric_scores
from saefilter.feature_selection import encode_reference, select_features
from saefilter.metrics import auroc, positives_removed
from saefilter.proximity import KERNELS, apply_kernel, unit_rows
from saefilter.reference import read_reference
from saefilter.scorer import load_backbone

DATA = Path("artifacts/data")


def cached_activations(encoder, tokenizer, path: Path, files: list[Path], limit: int | None, seed: int) -> dict:
    if path.exists():
        return dict(np.load(path))
    conversations = [c for f in files for c in read_reference(f)]
    if limit is not None and len(conversations) > limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(conversations))[:limit])
        conversations = [conversations[i] for i in keep]
    samples, _ = encode_reference(conversations, tokenizer, "response", 1024)
    acts = collect(encoder, samples, 16, 8192)
    arrays = {"max": acts.aggregated["max"], "mean": acts.aggregated["mean"], "resid": acts.mean_residual}
    np.savez(path, **arrays)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("artifacts/explore"))
    args = parser.parse_args()
    folder = args.out / args.sae.name
    folder.mkdir(parents=True, exist_ok=True)
    lm, sae = load_backbone(ScoreConfig(sae=str(args.sae)))
    encoder = FeatureEncoder(lm, sae)
    sets = {
        "harmful": cached_activations(encoder, lm.tokenizer, folder / "harmful.npz", [DATA / "harmful_select.jsonl"], None, 0),
        "benign": cached_activations(encoder, lm.tokenizer, folder / "benign.npz", [DATA / "benign_select.jsonl"], None, 0),
        "insecure": cached_activations(encoder, lm.tokenizer, folder / "insecure.npz", [DATA / "em_insecure_dev.jsonl"], args.limit, 1),
        "secure": cached_activations(encoder, lm.tokenizer, folder / "secure.npz", [DATA / "em_secure_dev.jsonl"], args.limit, 2),
    }
    decoder = unit_rows(sae.sae.W_dec.detach().float().cpu().numpy())
    labels = np.r_[np.ones(len(sets["insecure"]["max"])), np.zeros(len(sets["secure"]["max"]))]
    results = []
    for max_benign in (1.0, 0.5, 0.2):
        for top in (25, 100, 300):
            chosen = [f.index for f in select_features(sets["harmful"]["max"], sets["benign"]["max"], top, 0.02, max_benign)]
            cosines = decoder @ decoder[chosen].T  # [d_sae, n_harmful]
            nearest = cosines.max(1)
            background = float(np.median(nearest))
            for kernel_name in KERNELS:
                proximity = apply_kernel(nearest, kernel_name, background)
                for aggregation in ("max", "mean"):
                    acts = np.r_[sets["insecure"][aggregation], sets["secure"][aggregation]]
                    scores = geometric_scores(acts, proximity)
                    results.append({"max_benign_freq": max_benign, "top": top, "kernel": kernel_name,
                                    "aggregation": aggregation, "auroc": round(auroc(scores, labels), 4),
                                    "removed_at_50": round(positives_removed(scores, labels, 0.5), 3),
                                    "background_cos": round(background, 4)})
    results.sort(key=lambda r: -r["auroc"])
    (folder / "variants.json").write_text(json.dumps(results, indent=1))
    for row in results[:15] + results[-5:]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
