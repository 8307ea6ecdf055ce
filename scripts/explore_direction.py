#!/usr/bin/env python
"""Label-free control for "harm, not form": the mean-residual difference of the harmful and benign
tuning answers (180 pairs, 5-fold cross-validated on the pairs themselves), projected from each dev
sample's mean (or last scored token's) residual. No SAE: how much of the harm in answers the model
carries at a layer. Reads the residuals of `scripts/explore_matched.py collect`.

    python scripts/explore_direction.py --resid /root/saefilter_runs/explore/resid --layers 4,16,20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saefilter.evaluation.metrics import auroc

DEV_SETS = ("em_outputs_dev", "hh_dev", "toxigen_dev", "em_dev", "heldout", "mixed_chat")


def sample_vectors(folder: Path, layer: int, how: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Per sample: the mean residual over its scored tokens, or that of its last scored token."""
    resid = np.load(folder / f"blocks.{layer}.hook_resid_post.npy").astype(np.float32)
    offsets = np.load(folder / "offsets.npy")
    meta = json.loads((folder / "meta.json").read_text())
    vectors = np.add.reduceat(resid, offsets[:-1]) / np.diff(offsets)[:, None] if how == "mean" else resid[offsets[1:] - 1]
    return vectors, np.array(meta["labels"]), meta["pairs"]


def pair_indices(labels: np.ndarray, pairs: list) -> tuple[np.ndarray, np.ndarray]:
    by_pair: dict = {}
    for i, (pair, label) in enumerate(zip(pairs, labels, strict=True)):
        by_pair.setdefault(pair, {})[int(label)] = i
    complete = [v for v in by_pair.values() if 0 in v and 1 in v]
    return np.array([v[1] for v in complete]), np.array([v[0] for v in complete])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resid", type=Path, default=Path("artifacts/explore_matched/resid"))
    parser.add_argument("--layers", default="4,16,20")
    args = parser.parse_args()
    for layer in [int(x) for x in args.layers.split(",")]:
        for how in ("mean", "last"):
            x, y, pairs = sample_vectors(args.resid / "pairs_tune", layer, how)
            harmful, benign = pair_indices(y, pairs)
            fold = np.arange(len(harmful)) % 5
            scores = np.zeros(len(y))
            for f in range(5):
                train = fold != f
                direction = x[harmful[train]].mean(0) - x[benign[train]].mean(0)
                held = np.concatenate([harmful[~train], benign[~train]])
                scores[held] = x[held] @ direction
            used = np.concatenate([harmful, benign])
            cv_auroc, cv_pairwise = auroc(scores[used], y[used]), np.mean(scores[harmful] > scores[benign])
            parts = [f"L{layer} {how}: pairs (cv) AUROC {cv_auroc:.3f} pairwise {cv_pairwise:.3f}"]
            direction = x[harmful].mean(0) - x[benign].mean(0)
            for name in DEV_SETS:
                xs, ys, _ = sample_vectors(args.resid / name, layer, how)
                parts.append(f"{name} {auroc(xs @ direction, ys):.3f}")
            print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
