#!/usr/bin/env python
"""Do bfloat16 scores agree with float32 ones? Every quality benchmark of benchmark_quality.py, the
same rows scored twice with the model in each dtype (the SAE and the proximity product stay float32).

Per benchmark: Spearman correlation of the scores, overlap of the top 10% and top 50% sets (the
rows pruning would remove), and AUROC in each dtype. The adoption rule is applied and printed:
bfloat16 may become the CPU default only where, on every labelled set, the top-50% overlap is at
least 0.98 and the AUROC moves by at most 0.005, and on the identity counterfactuals (benign
variants of one answer, whose median cut is decided by noise) the mean percentile spread within a
template moves by at most 0.02 and no identity term tops more templates than in float32 by more
than one.

    python scripts/benchmark_dtype.py --split test -o artifacts/quality/dtype_test.json
    python scripts/benchmark_dtype.py --split test --sets "identity,own pairs,EM-model outputs"
    python scripts/benchmark_dtype.py --model qwen2.5-coder-1.5b-instruct --spot 100 --split test
    python scripts/benchmark_dtype.py --batch-check artifacts/data/em_secure_test.jsonl --n 200

--model measures another named model with its shipped SAE and feature set; --spot N keeps at most N
rows per class (N pairs) of each set, seeded, and the identity set and mixed_chat whole (a subset
that fits a few hours of CPU for a 1.5B model). Scores are cached per set and dtype, so a stopped
run resumes.

--batch-check scores the first N records of a file through the API in bfloat16 at batch size 16 and
1, and in float32, and prints how far scores and ranks move (what README's determinism table quotes).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from quality_sets import DATA, aggregated, benchmark_sets, cache_key, identity_spread, spot_rows

from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.encoder import FeatureEncoder
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.methods import geometric_scores
from saefilter.scoring.metrics import auroc
from saefilter.scoring.scorer import Method

DTYPES = ("float32", "bfloat16")
MIN_TOP_HALF_OVERLAP = 0.98
MAX_AUROC_MOVE = 0.005
MAX_SPREAD_MOVE = 0.02
MAX_EXTRA_TOPS = 1


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


def template_tops(scores: np.ndarray, templates: list[str], terms: list[str]) -> dict[str, int]:
    """How many templates each identity term tops (the highest-scoring variant of its template)."""
    tops: dict[str, int] = {}
    for template in sorted(set(templates)):
        rows = [i for i, t in enumerate(templates) if t == template]
        best = terms[max(rows, key=lambda i: (scores[i], -i))]
        tops[best] = tops.get(best, 0) + 1
    return tops


def identity_agreement(sets: dict, scores: dict, usable: dict) -> dict:
    """The identity rule: the spread it measures, and which variant tops each template, per dtype."""
    usable_rows = [i for i, u in enumerate(usable["identity"]) if u]
    templates = [sets["identity"].templates[i] for i in usable_rows]
    terms = [sets["identity"].terms[i] for i in usable_rows]
    out: dict = {}
    for dtype in DTYPES:
        per_set = {name: s[dtype] for name, s in scores.items()}
        out[dtype] = {"spread": identity_spread(sets, per_set, usable)["percentile_spread_mean"],
                      "tops": template_tops(per_set["identity"], templates, terms)}
    out["spread_move"] = out["bfloat16"]["spread"] - out["float32"]["spread"]
    out["largest_extra_tops"] = max(count - out["float32"]["tops"].get(term, 0)
                                    for term, count in out["bfloat16"]["tops"].items())
    out["passes"] = abs(out["spread_move"]) <= MAX_SPREAD_MOVE and out["largest_extra_tops"] <= MAX_EXTRA_TOPS
    return out


def cpu_name() -> str:
    """The CPU the measurement ran on, and whether it multiplies bfloat16 natively."""
    from saefilter.model.loading import native_bfloat16_cpu

    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    return f"{model}, native bfloat16: {'yes' if native_bfloat16_cpu() else 'no'}"


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
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--sae", default="embedded")
    parser.add_argument("--features", default="embedded")
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--batch-check", type=Path, default=None, help="records file for the batch-size check instead")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--spot", type=int, default=None, help="at most N rows per class (N pairs) per set")
    parser.add_argument("--sets", default=None,
                        help="comma-separated benchmark names to score (default: all); the identity rule needs "
                        "'identity' and at least one of the sets its percentiles are read against")
    args = parser.parse_args()
    if args.batch_check:
        batch_check(args.batch_check, args.n)
        return
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    sets = benchmark_sets(args.split, args.limit)
    if args.sets:
        wanted = args.sets.split(",")
        if unknown := set(wanted) - set(sets):
            raise SystemExit(f"--sets: unknown benchmark(s) {sorted(unknown)}; known: {sorted(sets)}")
        sets = {name: data for name, data in sets.items() if name in wanted}
    if args.spot:
        sets = {name: data if name in ("identity", "mixed_chat") else spot_rows(data, args.spot) for name, data in sets.items()}
    limit_key = args.limit if not args.spot else f"{args.limit}s{args.spot}"
    method = Method.load(ScoreConfig(model=args.model, sae=args.sae, features=args.features))
    loaded, proximity = method.sae, method.proximity.proximity
    scores: dict[str, dict[str, np.ndarray]] = {}
    usable: dict[str, np.ndarray] = {}
    for dtype in DTYPES:
        encoder = FeatureEncoder(load_model(args.model, device="cpu", dtype=dtype), loaded)
        for name, data in sets.items():
            # the aggregation `saefilter score` uses
            acts, usable[name] = aggregated(encoder, data, args.cache / cache_key(loaded.fingerprint, args.split, limit_key,
                                                                                   name, dtype), ScoreConfig.aggregation)
            scores.setdefault(name, {})[dtype] = geometric_scores(acts, proximity)
            scores[name]["labels"] = data.labels[usable[name]]
    results = {name: agreement(s["float32"], s["bfloat16"], s["labels"]) for name, s in scores.items()}
    identity = identity_agreement(sets, scores, usable) if "identity" in sets else None
    adopt = identity is not None and identity["passes"] and all(
        r["top50_overlap"] >= MIN_TOP_HALF_OVERLAP and abs(r["auroc_move"]) <= MAX_AUROC_MOVE
        for r in results.values() if "auroc_move" in r)
    print("| benchmark | rows | Spearman | top-10% overlap | top-50% overlap | AUROC float32 | AUROC bfloat16 | move |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        au = (f"{r['auroc_float32']:.4f} | {r['auroc_bfloat16']:.4f} | {r['auroc_move']:+.4f}" if "auroc_move" in r else "- | - | -")
        print(f"| {name} | {r['rows']} | {r['spearman']:.4f} | {r['top10_overlap']:.3f} | {r['top50_overlap']:.3f} | {au} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"model": args.model, "split": args.split, "spot": args.spot, "sae": args.sae, "features": args.features,
                                           "cpu": cpu_name(), "results": results, "identity": identity,
                                           "sets": list(sets), "adopt_bfloat16": adopt}, indent=1))
    if identity is None:
        print("identity counterfactuals not scored (--sets): no decision")
        return
    print(f"identity: mean percentile spread {identity['float32']['spread']:.3f} (float32) vs "
          f"{identity['bfloat16']['spread']:.3f} (bfloat16), move {identity['spread_move']:+.3f}; "
          f"templates topped by each term, float32 {identity['float32']['tops']}, bfloat16 {identity['bfloat16']['tops']}")
    scope = "every benchmark" if args.sets is None else f"the {len(sets)} benchmarks scored here"
    print(f"adopt bfloat16 as the CPU default, on {scope} (labelled sets: top-50% overlap >= {MIN_TOP_HALF_OVERLAP} and "
          f"|AUROC move| <= {MAX_AUROC_MOVE}; identity: |spread move| <= {MAX_SPREAD_MOVE}, no term tops more than "
          f"{MAX_EXTRA_TOPS} extra template): {'yes' if adopt else 'no'}")


if __name__ == "__main__":
    main()
