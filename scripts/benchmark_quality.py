#!/usr/bin/env python
"""Detection quality of one or more scoring configurations on every benchmark, same rows, same run.

Each configuration is NAME=SAE:FEATURES[@AGGREGATION] (the embedded default model; kernel and k as
`saefilter score` uses them by default; aggregation too unless @max or @mean says otherwise).
Every set is encoded once per SAE; scores are `saefilter score`'s (geometric score), so the numbers
are what a user gets.

Benchmarks (files of scripts/build_reference_data.py, which needs ../shared/datasets):
- matched, only the answer differs: own pairs (`pairs_tune` on dev, `pairs_report` on test), answers
  of emergently misaligned models (`em_outputs_*`), HH-RLHF harmless-base rejected vs chosen
  (`hh_*`, AUROC and pairwise accuracy), ToxiGen hate vs neutral about the same group (`toxigen_*`,
  pooled and per group);
- insecure vs secure code (`em_*`, --limit rows per class) and the old, form-confounded harmful vs
  benign chats (`*_heldout`);
- hard negatives: the own pairs' harmful answers against benign answers *about* dark topics
  (`data/matched/hard_negatives.jsonl`: war, overdose, scams, hate crimes, grief; its `tune` half on
  dev, `report` half on test): does the score follow harm, or the topic and mood harm comes with?
- flagged at the set's suggested threshold (`saefilter check`): the share of the harmful and benign
  rows of each set at or above it, and, on test only, of Qi et al. 2023's Dolly rows on
  safety-related subjects (`dolly_safety_test`, all benign, never used for a choice);
- `data/samples/mixed_chat.jsonl`: are all six plainly harmful rows above every benign row?
- identity counterfactuals: how far a benign answer's score moves when only an identity term or a
  name changes (spread of its percentile among the benign rows of the matched sets).

    python scripts/benchmark_quality.py --config old=saefilter/defaults/sae:old_features.json \\
        --config new=artifacts/sae/layer_16:features.json --split test -o artifacts/quality/test.json

Decontamination: every set is checked against the provenance of every configuration's feature set
(`saefilter eval`'s check); rows a set shares with what a feature set was built or chosen on are
dropped, and listed, unless the set is declared in-distribution (`--in-distribution NAME`, or
`all`; on --split dev every set is, since dev is where choices are made).

--judge MODEL adds an LLM judge (`saefilter eval --judge`'s score) on the same rows, its scores
cached by row under artifacts/quality/judge/ (a long run resumes); --spot N keeps N rows per class
(N whole pairs) of each set, seeded, for a check that runs in minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from quality_sets import (
    BENIGN_ONLY,
    DATA,
    DOLLY,
    aggregated,
    benchmark_sets,
    cache_key,
    decontaminated,
    fmt_ci,
    judge_set_scores,
    measure,
    parse_config,
    spot_rows,
)

from saefilter.features.feature_set import load_feature_set
from saefilter.features.provenance import Provenance
from saefilter.model.loading import DEFAULT_MODEL, LoadedModel, load_model
from saefilter.sae.encoder import FeatureEncoder
from saefilter.sae.loading import LoadedSAE
from saefilter.scoring.config import DEFAULT_KERNEL, ScoreConfig, resolve_features_path
from saefilter.scoring.methods import geometric_scores
from saefilter.scoring.scorer import Method, check_widths


def load_scoring_model(model: str, dtype: str, saes: list[LoadedSAE]) -> LoadedModel | None:
    """The model as `saefilter score` loads it (residual stream only, up to the deepest SAE's layer),
    so the numbers are the forward pass users run."""
    if not saes:
        return None
    return load_model(model, device="auto", dtype=dtype, residuals_only=True,
                      through_layer=max(sae.hook.layer for sae in saes))


def markdown(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| benchmark | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    first = results[names[0]]
    for bench, row in first.items():
        if bench in BENIGN_ONLY:
            continue
        label = f"{bench} ({row['n_harmful']} + {row['n_benign']})"
        lines.append(f"| {label}: AUROC | " + " | ".join(fmt_ci(results[n][bench]["auroc"], results[n][bench]["auroc_ci"]) for n in names) + " |")
        if "pairwise_accuracy" in row:
            lines.append(f"| {bench} ({row['pairs']} pairs): pairwise accuracy | " + " | ".join(
                fmt_ci(results[n][bench]["pairwise_accuracy"], results[n][bench]["pairwise_ci"]) for n in names) + " |")
    lines.append("| mixed_chat: ranks of the 6 harmful rows (of 20) | " + " | ".join(
        ", ".join(map(str, results[n]["mixed_chat"]["harmful_ranks"])) for n in names) + " |")
    for bench in ("hard negatives (dark topics)", DOLLY):
        if bench in first and "flagged_benign" in first[bench]:
            lines.append(f"| {bench}: benign rows flagged at the suggested threshold | " + " | ".join(
                f"{results[n][bench].get('flagged_benign', float('nan')):.3f}" for n in names) + " |")
    lines.append("| identity: mean / max percentile spread within a template | " + " | ".join(
        f"{results[n]['identity']['percentile_spread_mean']:.3f} / {results[n]['identity']['percentile_spread_max']:.3f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[],
                        help="NAME=SAE:FEATURES[@AGGREGATION] ('embedded' for the bundled ones; max or mean, default: saefilter score's)")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--limit", type=int, default=500, help="insecure/secure rows per class")
    parser.add_argument("--kernel", default=DEFAULT_KERNEL)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="model dtype (the SAE runs in float32)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model every configuration's SAE was trained on")
    parser.add_argument("--judge", action="append", default=[],
                        help="also an LLM judge (scoring.judge) with this model, on the same rows (repeatable; cached by row)")
    parser.add_argument("--spot", type=int, default=None, help="a spot check: at most N rows per class (N pairs) per set")
    parser.add_argument("--in-distribution", action="append", default=[],
                        help="a set (or 'all') to keep whole though a feature set was built or chosen on some of its rows")
    args = parser.parse_args()
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    sets = benchmark_sets(args.split, args.limit)
    if args.spot:
        sets = {name: data if name in ("identity", "mixed_chat") else spot_rows(data, args.spot) for name, data in sets.items()}
    provenance = Provenance()
    for item in args.config:
        features_spec = parse_config(item)[1].rpartition(":")[2]
        provenance = provenance.merged(load_feature_set(resolve_features_path(features_spec, args.model)).provenance)
    declared = set(args.in_distribution) | ({"all"} if args.split == "dev" else set())
    sets, overlap = decontaminated(sets, provenance, declared)
    limit_key = args.limit if not args.spot else f"{args.limit}s{args.spot}"
    methods = {}
    for item in args.config:
        name, specs, how = parse_config(item)
        sae_spec, _, features_spec = specs.rpartition(":")
        started = time.perf_counter()
        config = ScoreConfig(model=args.model, sae=sae_spec, features=features_spec, kernel=args.kernel)
        methods[name] = (Method.load(config), how, time.perf_counter() - started)
    lm = load_scoring_model(args.model, args.dtype, [method.sae for method, _, _ in methods.values()])
    results, timings, usable = {}, {}, {}
    for name, (method, how, load_seconds) in methods.items():
        started = time.perf_counter()
        loaded, feature_set, proximity = method.sae, method.feature_set, method.proximity.proximity
        check_widths(lm, loaded)
        encoder = FeatureEncoder(lm, loaded)
        scores = {}
        for set_name, data in sets.items():
            kept = f" minus {overlap[set_name]['rows']} seen" if overlap[set_name]["dropped"] else ""  # its own cache
            key = cache_key(loaded.fingerprint, args.split, limit_key, set_name + kept, args.dtype)
            acts, usable[set_name] = aggregated(encoder, data, args.cache / key, how)
            scores[set_name] = geometric_scores(acts, proximity)
        suggested = feature_set.meta.get("suggested_threshold")
        results[name] = measure(sets, scores, usable, args.bootstrap, suggested["value"] if suggested else None)
        timings[name] = round(load_seconds + time.perf_counter() - started, 1)  # loading its SAE and set included
        print(f"{name}: {timings[name]} s", flush=True)
    for spec in args.judge:
        started = time.perf_counter()
        slug = spec.replace("/", "_")
        scores = {}
        for set_name, data in sets.items():
            rows = usable.setdefault(set_name, np.ones(len(data.labels), dtype=bool))  # the configurations' rows
            kept = [c for c, u in zip(data.conversations, rows, strict=True) if u]
            scores[set_name] = judge_set_scores(spec, kept, 1024, args.cache.parent / "judge" / f"{slug}.jsonl")
        # a judge's own threshold: it says yes more likely than no
        results[f"judge {spec}"] = measure(sets, scores, usable, args.bootstrap, threshold=0.0)
        timings[f"judge {spec}"] = round(time.perf_counter() - started, 1)
        print(f"judge {spec}: {timings[f'judge {spec}']} s", flush=True)
    table = markdown(results)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"split": args.split, "limit": args.limit, "kernel": args.kernel, "configs": args.config,
                                           "overlap": overlap, "in_distribution": sorted(declared),
                                           "results": results, "seconds": timings, "table": table}, indent=1))


if __name__ == "__main__":
    main()
