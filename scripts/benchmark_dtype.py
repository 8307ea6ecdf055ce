#!/usr/bin/env python
"""Do bfloat16 scores agree with float32 ones? Every quality benchmark of benchmark_quality.py, the
same rows scored twice with the model in each dtype (the SAE and the proximity product stay float32).

Per benchmark: Spearman correlation of the scores, overlap of the top 10% and top 50% sets (the
rows pruning would remove), and AUROC in each dtype. The adoption rule of issue "Twice the speed"
is applied and printed: bfloat16 may become the CPU default only where every top-50% overlap is at
least 0.98 and no AUROC moves by more than 0.005.

    python scripts/benchmark_dtype.py --split test -o artifacts/quality/dtype_test.json
    python scripts/benchmark_dtype.py --batch-check artifacts/data/em_secure_test.jsonl --n 200

--batch-check scores the first N records of a file through the API in bfloat16 at batch size 16 and
1, and in float32, and prints how far scores and ranks move (what README's determinism table quotes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_quality import DATA, aggregated, benchmark_sets, cache_key

from saefilter.config import DEFAULT_KERNEL, ScoreConfig, resolve_features_path, resolve_sae_spec
from saefilter.evaluation.evaluate import geometric_scores
from saefilter.evaluation.metrics import auroc
from saefilter.features.feature_set import load_feature_set
from saefilter.model.activations import FeatureEncoder
from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.loading import load_sae

DTYPES = ("float32", "bfloat16")
MIN_TOP_HALF_OVERLAP = 0.98
MAX_AUROC_MOVE = 0.005


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def top_overlap(reference: np.ndarray, other: np.ndarray, share: float) -> float:
    """Share of the reference's top rows that are also the other's top rows (ties by row order)."""
    k = max(1, math.ceil(share * len(reference)))
    top = {int(i) for i in np.argsort(-reference, kind="stable")[:k]}
    return len(top & {int(i) for i in np.argsort(-other, kind="stable")[:k]}) / k


def agreement(f32: np.ndarray, b16: np.ndarray, labels: np.ndarray) -> dict:
    row = {"rows": len(f32), "spearman": spearman(f32, b16), "top10_overlap": top_overlap(f32, b16, 0.1),
           "top50_overlap": top_overlap(f32, b16, 0.5), "max_abs_diff": float(np.abs(f32 - b16).max())}
    if 0 < labels.sum() < len(labels):
        row |= {"auroc_float32": auroc(f32, labels), "auroc_bfloat16": auroc(b16, labels)}
        row["auroc_move"] = row["auroc_bfloat16"] - row["auroc_float32"]
    return row


def batch_check(path: Path, n: int) -> None:
    import saefilter

    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]
    runs = {(dtype, batch): np.array([r["score"] for r in saefilter.load_scorer(dtype=dtype, batch_size=batch).score(records)])
            for dtype, batch in (("bfloat16", 16), ("bfloat16", 1), ("float32", 16))}
    b16, b1, f32 = runs[("bfloat16", 16)], runs[("bfloat16", 1)], runs[("float32", 16)]

    def ranks(x: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(-x, kind="stable"), kind="stable")

    print(f"{len(records)} records, float32 score range {np.ptp(f32):.5f}")
    print(f"bfloat16 batch 16 vs 1: identical {np.mean(b16 == b1):.3f}, largest difference {np.abs(b16 - b1).max():.5f}, "
          f"largest rank move {np.abs(ranks(b16) - ranks(b1)).max()}, top half shared {top_overlap(b16, b1, 0.5):.3f}")
    print(f"bfloat16 vs float32 (batch 16): largest difference {np.abs(b16 - f32).max():.5f}, "
          f"largest rank move {np.abs(ranks(b16) - ranks(f32)).max()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", default="embedded")
    parser.add_argument("--features", default="embedded")
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--batch-check", type=Path, default=None, help="records file for the batch-size check instead")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    if args.batch_check:
        batch_check(args.batch_check, args.n)
        return
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    sets = benchmark_sets(args.split, args.limit)
    loaded = load_sae(resolve_sae_spec(args.sae))
    feature_set = load_feature_set(resolve_features_path(args.features))
    proximity = feature_set.proximity(loaded.sae.W_dec.detach().float().numpy(), ScoreConfig().neighbours, DEFAULT_KERNEL).proximity
    scores: dict[str, dict[str, np.ndarray]] = {}
    for dtype in DTYPES:
        encoder = FeatureEncoder(load_model(DEFAULT_MODEL, device="cpu", dtype=dtype), loaded)
        for name, data in sets.items():
            # the aggregation `saefilter score` uses (mean since the layer-16 default; this script once read max)
            acts, usable = aggregated(encoder, data, args.cache / cache_key(loaded.fingerprint, args.split, args.limit, name, dtype),
                                      ScoreConfig.aggregation)
            scores.setdefault(name, {})[dtype] = geometric_scores(acts, proximity)
            scores[name]["labels"] = data.labels[usable]
    results = {name: agreement(s["float32"], s["bfloat16"], s["labels"]) for name, s in scores.items()}
    adopt = all(r["top50_overlap"] >= MIN_TOP_HALF_OVERLAP for r in results.values()) and all(
        abs(r.get("auroc_move", 0.0)) <= MAX_AUROC_MOVE for r in results.values())
    print("| benchmark | rows | Spearman | top-10% overlap | top-50% overlap | AUROC float32 | AUROC bfloat16 | move |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        au = (f"{r['auroc_float32']:.4f} | {r['auroc_bfloat16']:.4f} | {r['auroc_move']:+.4f}" if "auroc_move" in r else "- | - | -")
        print(f"| {name} | {r['rows']} | {r['spearman']:.4f} | {r['top10_overlap']:.3f} | {r['top50_overlap']:.3f} | {au} |")
    print(f"adopt bfloat16 as the CPU default (every top-50% overlap >= {MIN_TOP_HALF_OVERLAP}, "
          f"every |AUROC move| <= {MAX_AUROC_MOVE}): {'yes' if adopt else 'no'}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"split": args.split, "sae": args.sae, "features": args.features,
                                           "results": results, "adopt_bfloat16": adopt}, indent=1))


if __name__ == "__main__":
    main()
