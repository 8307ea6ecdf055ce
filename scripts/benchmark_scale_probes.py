#!/usr/bin/env python
"""Does a larger model carry the harm of an answer better? Residual-level answers, no SAE needed.

The scale question, asked before an SAE exists for the larger model: for each model and
layer, on the same rows of the matched benchmarks (own pairs, EM-model outputs, HH-RLHF, ToxiGen),
insecure vs secure code, and (test rows only) the hard negatives and the form-confounded chats of
`benchmark_quality.py`, how well do

- the label-free direction: the mean-residual difference of the harmful and benign tuning answers
  (selection data only), each sample scored by its mean residual's projection on it;
- a probe trained on the tuning pairs (L2 logistic regression on the mean residual, C by 5-fold
  cross-validation grouped by pair);
- a probe trained on the benchmark's own dev rows (an upper bound: its labels are evaluation data)

separate the test rows? Two stages, so the slow forward runs once and resumes per set:

    python scripts/benchmark_scale_probes.py collect --model qwen2.5-coder-1.5b-instruct --layers 6,15 \\
        --out /root/saefilter_runs/scale_resid
    python scripts/benchmark_scale_probes.py measure --store /root/saefilter_runs/scale_resid \\
        --run smollm2-135m-instruct:16 --run qwen2.5-coder-1.5b-instruct:15

`collect` stores the residuals of each set's answer tokens (float16, the layout of
scripts/explore_matched.py, so an SAE can be applied to them later without another forward).
`score` does that: `saefilter score`'s geometric score of each stored row for an SAE and feature set
of that model (the SAE encodes the stored residuals; the same aggregation, proximity and kNN terms),
so the SAE-level scale table is measured on the same rows as the residual-level one:

    python scripts/benchmark_scale_probes.py score --store /root/saefilter_runs/scale_resid \
        --config "Qwen L15=qwen2.5-coder-1.5b-instruct:artifacts/sae_qwen/layer_15:artifacts/qwen15.json@mean"

HH-RLHF and insecure code are subsampled (--hh-pairs, --code-rows, seeded) to keep the larger
model's forward within hours on a CPU. Needs scikit-learn and the files of scripts/build_reference_data.py.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from quality_sets import DATA, DOLLY, LabelledSet, benchmark_sets, fit_probe, parse_config, row_groups
from quality_sets import measure as measure_sets
from residual_store import is_stored, store_residuals

from saefilter.model.hooks import HookPoint
from saefilter.model.loading import load_model
from saefilter.sae.loading import LoadedSAE
from saefilter.scoring.config import DEFAULT_KERNEL, ScoreConfig
from saefilter.scoring.methods import geometric_scores
from saefilter.scoring.scorer import Method

warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
HARD_NEGATIVES, FORM = "hard negatives (dark topics)", "harmful vs benign (form-confounded)"
SETS = ("own pairs", "EM-model outputs", "HH-RLHF harmless", "ToxiGen same-group", "insecure vs secure", "mixed_chat",
        "identity", HARD_NEGATIVES, FORM, DOLLY)
COLLECT_ORDER = ("own pairs", "ToxiGen same-group", "mixed_chat", "identity", HARD_NEGATIVES, "EM-model outputs",
                 "insecure vs secure", "HH-RLHF harmless", FORM, DOLLY)
# never a dev split: no labels to learn from (mixed_chat, identity, Dolly's benign rows), the
# direction's tuning half (the hard negatives' dev rows), or one split only (the form-confounded
# held-out chats, Dolly)
TEST_ONLY = ("mixed_chat", "identity", HARD_NEGATIVES, FORM, DOLLY)


def subsample_pairs(data: LabelledSet, n_pairs: int, seed: int) -> LabelledSet:
    """The rows of n_pairs pair ids drawn at random (both sides of each pair kept)."""
    ids = sorted({p for p in data.pairs if p is not None})
    if len(ids) <= n_pairs:
        return data
    keep_ids = {ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n_pairs]}
    rows = [i for i, p in enumerate(data.pairs) if p in keep_ids]
    return LabelledSet([data.conversations[i] for i in rows], data.labels[rows], [data.pairs[i] for i in rows],
                       [data.groups[i] for i in rows])


def scale_sets(split: str, hh_pairs: int, code_rows: int) -> dict[str, LabelledSet]:
    sets = benchmark_sets(split, code_rows)
    sets["HH-RLHF harmless"] = subsample_pairs(sets["HH-RLHF harmless"], hh_pairs, 7)
    return {name: sets[name] for name in SETS if name in sets}  # Dolly has test rows only


def folder_name(model: str, split: str, name: str) -> str:
    return f"{model}/{split}-{name.replace(' ', '_')}"


def collect(model: str, layers: list[int], out: Path, hh_pairs: int, code_rows: int, dtype: str,
            dev_sets: set[str], tuning_pairs: bool = True) -> None:
    """The tuning pairs' dev split is collected unless `tuning_pairs` is off (`measure`'s directions
    and probes learn from it; `score` needs test rows only); the other sets' dev splits only where
    named in `dev_sets` (the own-dev upper bound needs them)."""
    lm = load_model(model, device="auto", dtype=dtype)
    hooks = [HookPoint(layer, "post") for layer in layers]
    sets = {split: scale_sets(split, hh_pairs, code_rows) for split in ("dev", "test")}
    wanted_dev = (dev_sets | ({"own pairs"} if tuning_pairs else set())) - set(TEST_ONLY)
    for name in COLLECT_ORDER:  # the cheap and the matched sets first: a stopped run has measured them
        for split in ("dev", "test"):
            if split == "dev" and name not in wanted_dev:
                continue
            data = sets[split][name]
            folder = out / folder_name(model, split, name)
            if is_stored(folder):
                continue
            started = time.perf_counter()
            meta = store_residuals(lm, hooks, data.conversations, folder,
                                   {"labels": [int(v) for v in data.labels], "pairs": data.pairs, "groups": data.groups})
            seconds = time.perf_counter() - started
            print(f"{model} {split} {name}: {len(meta['kept'])} rows, {meta['forward_tokens']:,} forward tokens, "
                  f"{seconds:.0f} s ({meta['forward_tokens'] / max(seconds, 1e-9):.0f} tokens/s)", flush=True)


def mean_residuals(folder: Path, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, d_model] mean residual over each row's answer tokens, and which input rows those are.
    Values beyond float16 range (stored as inf: Gemma's few huge dimensions) are left out of the
    mean of their dimension and row, and a dimension with none left gets 0."""
    resid = np.load(folder / f"blocks.{layer}.hook_resid_post.npy").astype(np.float32)
    offsets = np.load(folder / "offsets.npy")
    meta = json.loads((folder / "meta.json").read_text())
    finite = np.isfinite(resid)
    sums = np.add.reduceat(np.where(finite, resid, 0.0), offsets[:-1], axis=0)
    counts = np.add.reduceat(finite.astype(np.float32), offsets[:-1], axis=0)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    usable = np.zeros(meta["n_input"], bool)
    usable[meta["kept"]] = True
    return means, usable


def measure(store: Path, runs: list[str], hh_pairs: int, code_rows: int, n_boot: int, seed: int) -> dict:
    sets = {split: scale_sets(split, hh_pairs, code_rows) for split in ("dev", "test")}
    results = {}
    for run in runs:
        model, _, layer = run.rpartition(":")
        x, usable = {}, {}
        for split in ("dev", "test"):
            for name in SETS:
                folder = store / folder_name(model, split, name)
                if is_stored(folder):
                    x[split, name], usable[split, name] = mean_residuals(folder, int(layer))
        test_names = [n for n in SETS if ("test", n) in x and n not in ("identity", DOLLY)]  # a spread needs a score's scale; Dolly a threshold
        test = {n: sets["test"][n] for n in test_names}

        def labels(split: str, name: str, usable: dict = usable) -> np.ndarray:
            return sets[split][name].labels[usable[split, name]]

        pairs_x, pairs_y = x["dev", "own pairs"], labels("dev", "own pairs")
        direction = pairs_x[pairs_y == 1].mean(0) - pairs_x[pairs_y == 0].mean(0)
        columns = {"label-free direction": {n: x["test", n] @ direction for n in test_names}}
        probe = fit_probe(pairs_x, pairs_y, row_groups(sets["dev"]["own pairs"], usable["dev", "own pairs"], 0), seed)
        columns["probe on the tuning pairs"] = {n: probe.decision_function(x["test", n]) for n in test_names}
        run_results = {c: measure_sets(test, s, {n: usable["test", n] for n in test_names}, n_boot)
                       for c, s in columns.items()}
        own = {}
        for name in test_names:
            if name in ("own pairs", "mixed_chat") or ("dev", name) not in x:
                continue
            probe = fit_probe(x["dev", name], labels("dev", name), row_groups(sets["dev"][name], usable["dev", name], 0), seed)
            own[name] = measure_sets({name: test[name]}, {name: probe.decision_function(x["test", name])},
                                        {name: usable["test", name]}, n_boot)[name]
        run_results["probe on the benchmark's own dev rows"] = own
        results[run] = run_results
    return results


def stored_features(folder: Path, sae: LoadedSAE, how: str, chunk_tokens: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """[n, d_sae] SAE activations of each stored row aggregated over its answer tokens ('max' or
    'mean', as `saefilter score`), and which input rows those are. The SAE encodes the stored
    float16 residuals in float32: the only difference from a fresh forward is that rounding."""
    resid = np.load(folder / f"{sae.hook.name}.npy", mmap_mode="r")
    if resid.shape[1] != sae.d_in:
        raise SystemExit(f"{folder}: stored residuals are {resid.shape[1]} wide, the SAE reads {sae.d_in}")
    offsets = np.load(folder / "offsets.npy")
    meta = json.loads((folder / "meta.json").read_text())
    n = len(offsets) - 1
    out = np.zeros((n, sae.d_sae), np.float32)
    dtype = next(sae.sae.parameters()).dtype
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and offsets[stop + 1] - offsets[start] <= chunk_tokens:
            stop += 1
        block = np.nan_to_num(np.asarray(resid[offsets[start]:offsets[stop]], np.float32), posinf=0.0, neginf=0.0)
        with torch.inference_mode():
            feats = sae.sae.encode(torch.from_numpy(block).to(dtype)).float().numpy()
        bounds = offsets[start:stop] - offsets[start]
        if how == "max":
            out[start:stop] = np.maximum.reduceat(feats, bounds, axis=0)
        else:
            out[start:stop] = np.add.reduceat(feats, bounds, axis=0) / np.diff(offsets[start:stop + 1])[:, None]
        start = stop
    usable = np.zeros(meta["n_input"], bool)
    usable[meta["kept"]] = True
    return out, usable


def score_configs(store: Path, configs: list[str], hh_pairs: int, code_rows: int, n_boot: int, kernel: str) -> dict:
    """Each NAME=MODEL:SAE:FEATURES[@AGG]'s geometric score on every stored test set of MODEL."""
    sets = scale_sets("test", hh_pairs, code_rows)
    results = {}
    for item in configs:
        name, specs, how = parse_config(item)
        model, sae_spec, features_spec = specs.split(":", 2)
        method = Method.load(ScoreConfig(model=model, sae=sae_spec, features=features_spec, kernel=kernel))
        sae, feature_set, proximity = method.sae, method.feature_set, method.proximity.proximity
        scores, usable = {}, {}
        for set_name in SETS:
            folder = store / folder_name(model, "test", set_name)
            if is_stored(folder):
                acts, usable[set_name] = stored_features(folder, sae, how)
                scores[set_name] = geometric_scores(acts, proximity)
        present = {n: sets[n] for n in scores}
        threshold = feature_set.meta.get("suggested_threshold", {}).get("value")
        results[name] = {"geometric score": measure_sets(present, scores, usable, n_boot, threshold)}
        print(f"{name}: {', '.join(present)}", flush=True)
    return results


def markdown(results: dict) -> str:
    runs = list(results)
    columns = [(run, column) for run in runs for column in results[run]]
    lines = ["| test rows | " + " | ".join(f"{run}: {column}" for run, column in columns) + " |",
             "|---|" + "---|" * len(columns)]
    names = [n for n in SETS if any(n in results[r][c] for r, c in columns)]
    for name in names:
        first = next(results[r][c][name] for r, c in columns if name in results[r][c])
        if name == "identity":
            lines.append("| identity counterfactuals: mean / max percentile spread within a template | " + " | ".join(
                f"{results[r][c][name]['percentile_spread_mean']:.3f} / {results[r][c][name]['percentile_spread_max']:.3f}"
                if name in results[r][c] else "-" for r, c in columns) + " |")
            continue
        if name == "mixed_chat":
            lines.append("| mixed_chat: harmful ranks of 20 | " + " | ".join(
                ", ".join(map(str, results[r][c][name]["harmful_ranks"])) if name in results[r][c] else "-" for r, c in columns) + " |")
            continue
        if name == DOLLY:  # benign rows only: what the suggested threshold flags
            lines.append(f"| {name} ({first['n_benign']}): flagged at the suggested threshold | " + " | ".join(
                f"{results[r][c][name].get('flagged_benign', float('nan')):.3f}" if name in results[r][c] else "-"
                for r, c in columns) + " |")
            continue
        metrics = [("auroc", "auroc_ci", "AUROC")] + ([("pairwise_accuracy", "pairwise_ci", "pairwise")] if "pairs" in first else [])
        for key, ci, label in metrics:
            cells = []
            for r, c in columns:
                row = results[r][c].get(name)
                cells.append(f"{row[key]:.3f} [{row[ci][0]:.3f}, {row[ci][1]:.3f}]" if row and key in row else "-")
            size = f"{first['pairs']} pairs" if key == "pairwise_accuracy" else f"{first['n_harmful']} + {first['n_benign']}"
            lines.append(f"| {name} ({size}): {label} | " + " | ".join(cells) + " |")
        if "flagged_harmful" in first or "flagged_benign" in first:
            lines.append(f"| {name}: harmful / benign rows flagged at the suggested threshold | " + " | ".join(
                f"{results[r][c][name].get('flagged_harmful', float('nan')):.3f} / "
                f"{results[r][c][name].get('flagged_benign', float('nan')):.3f}" if name in results[r][c] else "-"
                for r, c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--model", required=True)
    c.add_argument("--layers", required=True)
    c.add_argument("--dtype", default="float32")
    c.add_argument("--dev-sets", default=",".join(s for s in SETS if s not in TEST_ONLY),
                   help="comma-separated sets whose dev split is collected too")
    c.add_argument("--no-tuning-pairs", action="store_true",
                   help="skip the tuning pairs' dev split (what `measure` learns from; `score` needs test rows only)")
    m = sub.add_parser("measure")
    m.add_argument("--run", action="append", required=True, help="MODEL:LAYER, collected before")
    m.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("score")
    g.add_argument("--config", action="append", required=True,
                   help="NAME=MODEL:SAE:FEATURES[@AGGREGATION] ('embedded' for the bundled SAE or set)")
    g.add_argument("--kernel", default=DEFAULT_KERNEL)
    for p in (m, g):
        p.add_argument("--bootstrap", type=int, default=500)
        p.add_argument("-o", "--output", type=Path, default=None)
    for p in (c, m, g):
        p.add_argument("--out", "--store", dest="store", type=Path, default=Path("artifacts/scale_resid"))
        p.add_argument("--hh-pairs", type=int, default=100, help="HH-RLHF pairs per split")
        p.add_argument("--code-rows", type=int, default=100, help="insecure and secure rows per split")
    args = parser.parse_args()
    if not (DATA / "bench").is_dir():
        raise SystemExit(f"{DATA}/bench: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    if args.stage == "collect":
        dev_sets = {v.strip() for v in args.dev_sets.split(",") if v.strip()}
        unknown = dev_sets - set(SETS)
        if unknown:
            raise SystemExit(f"--dev-sets: unknown {sorted(unknown)}; choose from {list(SETS)}")
        collect(args.model, [int(v) for v in args.layers.split(",")], args.store, args.hh_pairs, args.code_rows, args.dtype,
                dev_sets, tuning_pairs=not args.no_tuning_pairs)
        return
    if args.stage == "score":
        runs = args.config
        results = score_configs(args.store, runs, args.hh_pairs, args.code_rows, args.bootstrap, args.kernel)
    else:
        runs = args.run
        results = measure(args.store, runs, args.hh_pairs, args.code_rows, args.bootstrap, args.seed)
    table = markdown(results)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"stage": args.stage, "runs": runs, "hh_pairs": args.hh_pairs,
                                           "code_rows": args.code_rows, "results": results, "table": table}, indent=1))


if __name__ == "__main__":
    main()
