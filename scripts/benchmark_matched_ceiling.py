#!/usr/bin/env python
"""How far could any readout of the default's SAE features go on the matched benchmarks? Supervised ceilings.

The targets set on 2026-12-02 ask the embedded default for AUROC >= 0.95 on the held-out own pairs and >= 0.85 on the
answers of emergently misaligned models. To tell "the selection misses a signal" from "the layer-16
SAE features of this model do not carry it", this script fits L2 logistic regressions on the same
mean-aggregated SAE latents (4,096 dims) that the default scores, and scores the test rows of
`scripts/benchmark_quality.py` (same rows, same encodings: it reads and fills that script's cache):

- trained on the own tuning pairs (the selection data the default may use): the most a linear
  readout learnt from that data reaches on each benchmark;
- trained on each benchmark's own dev rows (EM outputs, HH-RLHF, ToxiGen, insecure code): the most
  the features carry for that benchmark when its own labels are known. A filter may never be tuned
  on these sets; this column is an upper bound, not a candidate;
- trained on all of those dev rows pooled.

C is chosen by 5-fold cross-validation on the training rows, folds grouped by pair where rows come
in pairs, so a pair never sits on both sides of a fold. Needs scikit-learn (`pip install -e '.[bench]'`).

    python scripts/benchmark_matched_ceiling.py --bootstrap 500 -o artifacts/quality/ceiling_matched.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from quality_sets import DATA, aggregated, benchmark_sets, cache_key, fit_probe, measure, row_groups

from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.loading import load_sae
from saefilter.scoring.config import ScoreConfig, resolve_sae_spec
from saefilter.scoring.methods import geometric_scores
from saefilter.scoring.scorer import Method

warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
IN_DISTRIBUTION = ("own pairs", "EM-model outputs", "HH-RLHF harmless", "ToxiGen same-group", "insecure vs secure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", default="embedded")
    parser.add_argument("--features", default="embedded")
    parser.add_argument("--aggregation", default="mean", choices=("max", "mean"))
    parser.add_argument("--limit", type=int, default=500, help="insecure/secure rows per class (as benchmark_quality.py)")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    lm = load_model(DEFAULT_MODEL, device="auto", dtype="float32")
    loaded = load_sae(resolve_sae_spec(args.sae))
    encoder = FeatureEncoder(lm, loaded)
    acts, usable, sets = {}, {}, {}
    for split in ("dev", "test"):
        sets[split] = benchmark_sets(split, args.limit)
        for name, data in sets[split].items():
            key = cache_key(loaded.fingerprint, split, args.limit, name)
            acts[split, name], usable[split, name] = aggregated(encoder, data, args.cache / key, args.aggregation)
    dev, test = sets["dev"], sets["test"]

    def labels(split: str, name: str) -> np.ndarray:
        return sets[split][name].labels[usable[split, name]]

    def training(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate([acts["dev", n] for n in names]), np.concatenate([labels("dev", n) for n in names]),
                np.concatenate([row_groups(dev[n], usable["dev", n], i) for i, n in enumerate(names)]))

    test_acts = {n: acts["test", n] for n in test}
    test_usable = {n: usable["test", n] for n in test}
    proximity = Method.load(ScoreConfig(sae=args.sae, features=args.features), sae=loaded).proximity.proximity
    columns = {"shipped set, geometric score": measure(test, {n: geometric_scores(a, proximity) for n, a in test_acts.items()},
                                                       test_usable, args.bootstrap)}
    chosen_c = {}
    for column, names in (("probe on the own tuning pairs", ("own pairs",)), ("probe on all dev rows pooled", IN_DISTRIBUTION)):
        probe = fit_probe(*training(names), args.seed)
        chosen_c[column] = float(probe[-1].C_[0])
        columns[column] = measure(test, {n: probe.decision_function(a) for n, a in test_acts.items()}, test_usable, args.bootstrap)
    in_distribution = {}
    for name in IN_DISTRIBUTION:
        probe = fit_probe(*training((name,)), args.seed)
        chosen_c[f"own dev rows: {name}"] = float(probe[-1].C_[0])
        scores = {n: probe.decision_function(a) for n, a in test_acts.items()}
        in_distribution[name] = measure(test, scores, test_usable, args.bootstrap)[name]
    columns["probe on the benchmark's own dev rows"] = in_distribution

    table = markdown(columns, {n: (int(labels("dev", n).sum()), int((labels("dev", n) == 0).sum())) for n in IN_DISTRIBUTION})
    print(table)
    print("C chosen:", json.dumps(chosen_c))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"sae": args.sae, "features": args.features, "aggregation": args.aggregation,
                                           "results": columns, "C": chosen_c, "table": table}, indent=1))


def markdown(columns: dict[str, dict], train_sizes: dict[str, tuple[int, int]]) -> str:
    def cell(column: str, bench: str, metric: str) -> str:
        row = columns[column].get(bench)
        if row is None or metric not in row:
            return "-"
        ci = row["auroc_ci"] if metric == "auroc" else row["pairwise_ci"]
        return f"{row[metric]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    names = list(columns)
    lines = ["| test rows | " + " | ".join(names) + " | dev rows the own-dev probe trains on |", "|---|" + "---|" * (len(names) + 1)]
    for bench, row in columns[names[0]].items():
        if bench in ("mixed_chat", "identity"):
            continue
        size = "{} + {}".format(*train_sizes[bench]) if bench in train_sizes else "-"
        lines.append(f"| {bench} ({row['n_harmful']} + {row['n_benign']}): AUROC | "
                     + " | ".join(cell(c, bench, "auroc") for c in names) + f" | {size} |")
        if "pairwise_accuracy" in row:
            lines.append(f"| {bench} ({row['pairs']} pairs): pairwise | " + " | ".join(cell(c, bench, "pairwise_accuracy") for c in names) + " | |")
    lines.append("| mixed_chat: harmful ranks of 20 | " + " | ".join(
        ", ".join(map(str, columns[c]["mixed_chat"]["harmful_ranks"])) if "mixed_chat" in columns[c] else "-" for c in names) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
