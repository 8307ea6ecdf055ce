#!/usr/bin/env python
"""Development exploration, round 4: a second harmful direction for code, from the built-in code contrast.

The probe direction of the built-in code contrast (42 + 42 insecure vs secure snippets, layer-16
mean residuals from `scripts/explore_matched.py collect`), its part of the score z-matched to the
shipped set's on the benign tuning answers and added with weight lambda. Dev rows only (the
encodings of `benchmark_quality.py --split dev`).

    python scripts/explore_code_direction.py --resid /root/saefilter_runs/explore/resid
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from explore_probe_direction import (
    dev_encodings,
    load_feature_set,
    load_sae,
    resolve_features_path,
    resolve_sae_spec,
    share,
    unit_rows,
)
from explore_probe_weights import metrics, report

from saefilter.features.direction import probe_direction


def mean_residuals(folder: Path) -> np.ndarray:
    resid = np.load(folder / "blocks.16.hook_resid_post.npy").astype(np.float32)
    offsets = np.load(folder / "offsets.npy")
    return np.add.reduceat(resid, offsets[:-1], axis=0) / np.diff(offsets)[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resid", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    args = parser.parse_args()
    harmful, benign = mean_residuals(args.resid / "builtin_code_harmful"), mean_residuals(args.resid / "builtin_code_benign")
    w = probe_direction(np.concatenate([harmful, benign]), np.r_[np.ones(len(harmful)), np.zeros(len(benign))])
    sets, acts, usable = dev_encodings(args.cache)
    decoder = load_sae(resolve_sae_spec("embedded")).sae.W_dec.detach().float().numpy()
    shipped = load_feature_set(resolve_features_path("embedded")).proximity(decoder, 1, "sq-excess").proximity.astype(np.float64)
    near = np.maximum(unit_rows(decoder).astype(np.float64) @ w, 0.0)
    benign_rows = sets["own pairs"].labels[usable["own pairs"]] == 0
    scale = share(acts["own pairs"], shipped)[benign_rows].std() / share(acts["own pairs"], near)[benign_rows].std()
    report("shipped (latents + chat direction)", {n: metrics(sets, usable, n, share(a, shipped)) for n, a in acts.items()})
    report("code direction alone", {n: metrics(sets, usable, n, share(a, near)) for n, a in acts.items()})
    for lam in (0.25, 0.5, 1.0):
        proximity = shipped + lam * scale * near
        report(f"shipped + {lam:g} code direction", {n: metrics(sets, usable, n, share(a, proximity)) for n, a in acts.items()})


if __name__ == "__main__":
    main()
