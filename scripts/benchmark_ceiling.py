#!/usr/bin/env python
"""How much of insecure-vs-secure is readable from the embedded model at all? Supervised ceilings.

The geometric score never sees em/ data. To tell "the method misses a signal" from "the model does
not carry it", this script fits supervised linear probes (L2 logistic regression, C chosen by
5-fold cross-validation on the training rows) on the same layer-4 activations saefilter scores:

- the mean residual over the response tokens (576 dims): everything linear at the layer;
- the SAE latents, max and mean over the response tokens (4,096 dims each): everything the SAE
  keeps, with labels to weight it;
- the max activations of the default's 50 harmful latents only: how far the shipped feature set
  could go if its latents were weighted with hindsight.

Probes train on em dev rows and are scored on the em test rows that `saefilter eval --split test
--limit N` uses (same seeded subsample), beside the unsupervised default computed from the same
activations in the same run. A probe's AUROC is a ceiling for a filter built without em/ labels on
this model, not a method to ship: it needs labelled misalignment-inducing data, which users lack.

Needs scikit-learn (`pip install -e '.[bench]'`) and the files of scripts/build_reference_data.py.

    python scripts/benchmark_ceiling.py --train-limit 1000 --test-limit 500 -o artifacts/ceiling.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from saefilter.features.feature_set import load_feature_set
from saefilter.features.selection import encode_each
from saefilter.runs.evaluate import EvalActivations, EvalRequest, collect, labelled_conversations
from saefilter.sae.encoder import FeatureEncoder
from saefilter.scoring.config import ScoreConfig, resolve_features_path
from saefilter.scoring.methods import excess_over_dataset, geometric_scores
from saefilter.scoring.metrics import all_metrics, bootstrap_intervals
from saefilter.scoring.scorer import load_backbone

DATA = Path("artifacts/data")
warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # l1_ratios / legacy-attribute notices


def encoded_split(config: ScoreConfig, encoder: FeatureEncoder, split: str, limit: int, seed: int, cache: Path) -> tuple[EvalActivations, np.ndarray]:
    """Activations of a seeded subsample of one em split, cached: encoding is the slow part."""
    if cache.exists():
        stored = np.load(cache)
        return EvalActivations({"max": stored["max"], "mean": stored["mean"]}, stored["resid"]), stored["labels"]
    request = EvalRequest(positive=[DATA / f"em_insecure_{split}.jsonl"], negative=[DATA / f"em_secure_{split}.jsonl"], limit=limit, seed=seed)
    conversations, labels, _ = labelled_conversations(request, None)
    encoded = encode_each(conversations, encoder.lm.tokenizer, config.tokens, config.max_tokens)
    if any(s is None for s in encoded):
        sys.exit(f"{split}: {sum(s is None for s in encoded)} rows have nothing to score")
    started = time.perf_counter()
    acts = collect(encoder, encoded, config.batch_size, config.batch_tokens)
    print(f"encoded {len(encoded)} {split} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    np.savez(cache, max=acts.aggregated["max"], mean=acts.aggregated["mean"], resid=acts.mean_residual, labels=labels)
    return acts, labels


def probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-4, 1, 11), cv=5, scoring="roc_auc", max_iter=5000, random_state=seed),
    )
    probe.fit(train_x, train_y)
    chosen_c = float(probe[-1].C_[0])
    return probe.decision_function(test_x), chosen_c


def report(name: str, scores: np.ndarray, labels: np.ndarray, n_boot: int, seed: int, **extra: object) -> dict:
    row = {"method": name, "metrics": all_metrics(scores, labels), "intervals": bootstrap_intervals(scores, labels, n_boot, seed), **extra}
    m, ci = row["metrics"], row["intervals"]["auroc"]
    print(f"| {name} | {m['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {m['removed_at_50']:.2f} |")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=1000, help="em dev rows per class to train the probes on")
    parser.add_argument("--test-limit", type=int, default=500, help="em test rows per class (as in benchmark_quality.py)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/ceiling"))
    parser.add_argument("--model", default=ScoreConfig.model, help="for the scale table: another model ...")
    parser.add_argument("--sae", default=ScoreConfig.sae, help="... with its own SAE ...")
    parser.add_argument("--features", default=ScoreConfig.features, help="... and feature set")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("-o", "--output", type=Path, default=Path("artifacts/ceiling/ceiling.json"))
    args = parser.parse_args()
    if not (DATA / "em_insecure_dev.jsonl").exists():
        sys.exit(f"{DATA}: run scripts/build_reference_data.py first (needs ../shared/datasets)")
    args.cache.mkdir(parents=True, exist_ok=True)

    config = ScoreConfig(model=args.model, sae=args.sae, features=args.features, dtype=args.dtype)
    feature_set = load_feature_set(resolve_features_path(config.features))
    lm, loaded = load_backbone(config, check_sae=feature_set.check_against)
    encoder = FeatureEncoder(lm, loaded)
    # the embedded default keeps its old cache names; other SAEs are kept apart by their fingerprint
    tag = "" if args.sae == ScoreConfig.sae and args.dtype == "float32" else f"{loaded.fingerprint[7:23]}_{args.dtype}_"
    train, train_y = encoded_split(config, encoder, "dev", args.train_limit, args.seed, args.cache / f"{tag}dev_{args.train_limit}_{args.seed}.npz")
    test, test_y = encoded_split(config, encoder, "test", args.test_limit, args.seed, args.cache / f"{tag}test_{args.test_limit}_{args.seed}.npz")

    decoder = loaded.sae.W_dec.detach().float().cpu().numpy()
    proximity = feature_set.proximity(decoder, config.neighbours, config.kernel).proximity
    default = geometric_scores(test.aggregated[config.aggregation], proximity)
    harmful = feature_set.indices
    print(f"\n{int(train_y.sum())} + {int(len(train_y) - train_y.sum())} dev rows train, "
          f"{int(test_y.sum())} + {int(len(test_y) - test_y.sum())} test rows score\n")
    print("| method | AUROC [95% CI] | removed@50% |\n|---|---|---|")
    rows = [report(f"{args.model} / {args.sae}, unsupervised (geometric, max, k=1, sq-excess)", default, test_y, args.bootstrap, args.seed)]
    inputs = {
        f"probe: mean residual ({train.mean_residual.shape[1]})": (train.mean_residual, test.mean_residual),
        f"probe: SAE latents, max ({loaded.d_sae:,})": (train.aggregated["max"], test.aggregated["max"]),
        f"probe: SAE latents, mean ({loaded.d_sae:,})": (train.aggregated["mean"], test.aggregated["mean"]),
        f"probe: the default's {len(harmful)} harmful latents, max": (train.aggregated["max"][:, harmful], test.aggregated["max"][:, harmful]),
        f"probe: the default's {len(harmful)} harmful latents, max above the split's mean":
            (excess_over_dataset(train.aggregated["max"])[:, harmful], excess_over_dataset(test.aggregated["max"])[:, harmful]),
    }
    for name, (x_train, x_test) in inputs.items():
        scores, chosen_c = probe_scores(x_train, train_y, x_test, args.seed)
        rows.append(report(name, scores, test_y, args.bootstrap, args.seed, C=chosen_c))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"train_rows": len(train_y), "test_rows": len(test_y), "seed": args.seed, "results": rows}, indent=2))
    print(f"\nwrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
