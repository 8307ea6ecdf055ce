"""Compare SAEs on the same held-out tokens of one activation store (explained variance, MSE, L0, dead).

`train_sae.py` reports each SAE on its own store's held-out slice, so SAEs trained on different
stores (more tokens, another collection dtype) are not compared on the same rows. This script
recomputes the held-out rows a `train_sae.py` run on STORE used (same split and outlier rule), keeps
those at or after --from-row (the store follows the corpus order, so rows past what an older SAE was
trained on are unseen by it too) and evaluates every --sae on exactly those rows.

    python scripts/evaluate_sae.py --store artifacts/sae_qwen1m/acts --hook blocks.15.hook_resid_post \
        --sae saefilter/defaults/qwen2.5-coder-1.5b-instruct/sae --sae artifacts/sae_qwen1m/layer_15 \
        --from-row 210000 --outlier-norm-factor 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saefilter.sae.training import SAETrainingSettings, evaluate_sae, rows_within_norm, split_rows, store_rows


def held_out_rows(acts: np.ndarray, from_row: int, outlier_norm_factor: float | None) -> np.ndarray:
    """The held-out rows `train_topk_sae` used on this store (default settings), from `from_row` on."""
    settings = SAETrainingSettings()
    _, held = split_rows(len(acts), settings.held_out_fraction, settings.seed)
    if outlier_norm_factor is not None:
        held, _ = rows_within_norm(acts, held, outlier_norm_factor)
    return held[held >= from_row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="OUT/acts of a train_sae.py run")
    parser.add_argument("--hook", required=True)
    parser.add_argument("--sae", type=Path, action="append", required=True, help="an SAE folder (repeat)")
    parser.add_argument("--from-row", type=int, default=0, help="first store row to evaluate on")
    parser.add_argument("--outlier-norm-factor", type=float, default=None)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()

    from sae_lens import SAE

    acts = store_rows(args.store, args.hook)
    rows = held_out_rows(acts, args.from_row, args.outlier_norm_factor)
    print(f"{len(rows):,} held-out rows from row {args.from_row:,} of {len(acts):,}")
    results = {}
    for path in args.sae:
        ev, mse, l0, dead = evaluate_sae(SAE.load_from_disk(path), acts, rows)
        results[str(path)] = {"explained_variance": round(ev, 4), "mse": round(mse, 6), "l0": round(l0, 2),
                              "dead_fraction": round(dead, 4)}
        print(path, json.dumps(results[str(path)]), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"store": str(args.store), "hook": args.hook, "from_row": args.from_row,
                                           "rows": len(rows), "saes": results}, indent=1))


if __name__ == "__main__":
    main()
