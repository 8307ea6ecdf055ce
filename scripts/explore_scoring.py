#!/usr/bin/env python
"""Fast exploration of scoring and selection variants on cached activations (development split).

Encodes the reference select-splits and the em dev rows once per SAE (cached as .npz under
artifacts/explore/), then evaluates many variants in seconds: feature-selection criteria,
proximity kernels, aggregations. Only the dev split is used here; BENCHMARKS.md reports the
chosen configuration on the test split with `saefilter eval`.

    python scripts/explore_scoring.py --sae artifacts/sae/layer_4 --limit 250
    python scripts/explore_scoring.py --sae artifacts/sae/layer_4 --contrasts   # per-contrast selection
    python scripts/explore_scoring.py --sae artifacts/sae/layer_4 --weighting   # weights of the default's latents

`--contrasts` selects features separately from each matched contrast
(artifacts/data/contrast_{toxicity,intent}_{harmful,benign}.jsonl), merges the top of each, and
reports three checks side by side: held-out harmful vs benign chats, the em dev split, and the
rank of the plainly harmful rows of data/samples/mixed_chat.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saefilter.config import DEFAULT_KERNEL, EMBEDDED, ScoreConfig, resolve_features_path
from saefilter.evaluation.evaluate import collect, geometric_scores
from saefilter.evaluation.metrics import auroc, positives_removed
from saefilter.features.selection import encode_reference, select_features
from saefilter.inputs.reference import read_reference
from saefilter.model.activations import FeatureEncoder
from saefilter.scoring.proximity import KERNELS, FeatureProximity, feature_proximity, unit_rows
from saefilter.scoring.scorer import load_backbone

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
    parser.add_argument("--contrasts", action="store_true", help="per-contrast selection variants (see above)")
    parser.add_argument("--weighting", action="store_true", help="weights for the embedded default's latents (see below)")
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
    if args.contrasts:
        explore_contrasts(encoder, lm.tokenizer, folder, sets, decoder)
        return
    if args.weighting:
        explore_weighting(encoder, lm.tokenizer, folder, sets, decoder)
        return
    labels = np.r_[np.ones(len(sets["insecure"]["max"])), np.zeros(len(sets["secure"]["max"]))]
    results = []
    for max_benign in (1.0, 0.5, 0.2):
        for top in (25, 100, 300):
            chosen = [f.index for f in select_features(sets["harmful"]["max"], sets["benign"]["max"], top, 0.02, max_benign)]
            for kernel_name in KERNELS:
                prox = unweighted_proximity(decoder, chosen, kernel_name)
                proximity, background = prox.proximity, prox.background
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


def unweighted_proximity(decoder: np.ndarray, chosen: list[int], kernel: str) -> FeatureProximity:
    """Proximity to the nearest of the chosen latents (k = 1, every weight 1), as the scorer computes it."""
    return feature_proximity(decoder, chosen, [1.0] * len(chosen), 1, kernel)


def explore_weighting(encoder, tokenizer, folder: Path, sets: dict, decoder: np.ndarray) -> None:
    """The embedded default's latents weighted by their selection statistics instead of 1."""
    features = json.loads(resolve_features_path(EMBEDDED).read_text())["features"]
    indices = [f["index"] for f in features]
    stats = [f["stats"] for f in features]
    weightings = {
        "uniform": [1.0] * len(features),
        "effect size": [s["effect_size"] for s in stats],
        "effect size squared": [s["effect_size"] ** 2 for s in stats],
        "log frequency ratio": [float(np.log((s["freq_harmful"] + 0.01) / (s["freq_benign"] + 0.01))) for s in stats],
    }
    checks = {"em_dev": (sets["insecure"], sets["secure"]),
              "heldout": tuple(cached_activations(encoder, tokenizer, folder / f"{n}_heldout.npz", [DATA / f"{n}_heldout.jsonl"], None, 0)
                               for n in ("harmful", "benign"))}
    for name, weights in weightings.items():
        proximity = feature_proximity(decoder, indices, weights, 1, DEFAULT_KERNEL).proximity
        row = {"weights": name}
        for check, (pos, neg) in checks.items():
            labels = np.r_[np.ones(len(pos["max"])), np.zeros(len(neg["max"]))]
            row[check] = round(auroc(geometric_scores(np.r_[pos["max"], neg["max"]], proximity), labels), 4)
        print(json.dumps(row))


MIXED_HARMFUL_LINES = (3, 7, 10, 14, 16, 19)  # the plainly harmful samples of data/samples/mixed_chat.jsonl


def explore_contrasts(encoder, tokenizer, folder: Path, sets: dict, decoder: np.ndarray) -> None:
    def cached(name: str, path: Path) -> dict:
        return cached_activations(encoder, tokenizer, folder / f"{name}.npz", [path], None, 0)

    contrasts = {c: (cached(f"contrast_{c}_harmful", DATA / f"contrast_{c}_harmful.jsonl"),
                     cached(f"contrast_{c}_benign", DATA / f"contrast_{c}_benign.jsonl")) for c in ("toxicity", "intent")}
    checks = {
        "heldout": (cached("harmful_heldout", DATA / "harmful_heldout.jsonl"), cached("benign_heldout", DATA / "benign_heldout.jsonl")),
        "em_dev": (sets["insecure"], sets["secure"]),
    }
    mixed = cached("mixed_chat", Path("data/samples/mixed_chat.jsonl"))
    mixed_labels = np.isin(np.arange(1, len(mixed["max"]) + 1), MIXED_HARMFUL_LINES).astype(float)
    results = []
    for max_benign in (0.5, 0.3, 0.2, 0.1):
        chosen_by = {c: [f.index for f in select_features(h["max"], b["max"], 300, 0.02, max_benign)]
                     for c, (h, b) in contrasts.items()}
        for mix in ("toxicity", "intent", "both"):
            for top_each in (25, 50, 100):
                names = ("toxicity", "intent") if mix == "both" else (mix,)
                chosen = list(dict.fromkeys(i for c in names for i in chosen_by[c][:top_each]))
                for kernel_name in KERNELS:
                    proximity = unweighted_proximity(decoder, chosen, kernel_name).proximity
                    for aggregation in ("max", "mean"):
                        row = {"max_benign": max_benign, "mix": mix, "top_each": top_each, "kernel": kernel_name,
                               "aggregation": aggregation}
                        for check, (pos, neg) in checks.items():
                            scores = geometric_scores(np.r_[pos[aggregation], neg[aggregation]], proximity)
                            labels = np.r_[np.ones(len(pos[aggregation])), np.zeros(len(neg[aggregation]))]
                            row[check] = round(auroc(scores, labels), 4)
                        mixed_scores = geometric_scores(mixed[aggregation], proximity)
                        row["mixed_auroc"] = round(auroc(mixed_scores, mixed_labels), 4)
                        row["mixed_top1_harmful"] = bool(mixed_labels[np.argmax(mixed_scores)])
                        results.append(row)
    results.sort(key=lambda r: -(r["heldout"] + r["em_dev"]))
    (folder / "contrast_variants.json").write_text(json.dumps(results, indent=1))
    for row in results[:25]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
