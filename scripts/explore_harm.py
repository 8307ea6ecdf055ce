#!/usr/bin/env python
"""Development exploration for "harm, not form", round 2: selections that use the 180 tuning pairs
(same prompt, harmful vs benign answer) with token control, an identity-term filter and stability
across folds, at the later layers where the model carries the harm in answers.

Reads the residuals of `scripts/explore_matched.py collect` (dev splits and selection data only) and
an SAE per layer; every number is on dev data. The own-pairs columns are cross-validated: the pair
statistics of a fold are computed without that fold's pairs, and the fold is scored with that
selection, so a selection that only memorises its pairs does not look good here.

    python scripts/explore_harm.py --layers 16,20 --resid /root/saefilter_runs/explore \
        --sae-dir /root/saefilter_runs/sae_smol
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from explore_direction import sample_vectors
from explore_matched import SetFeatures, encode_set
from explore_matched_variants import DEV_SETS, cohens_d, measure, pair_split, top_by

from saefilter.evaluation.evaluate import geometric_scores
from saefilter.evaluation.metrics import auroc
from saefilter.features.selection import TokenActivations, context_excess, paired_t, token_baseline
from saefilter.sae.loading import load_sae
from saefilter.scoring.proximity import feature_proximity

Selector = Callable[[np.ndarray], list[int]]  # training-pair mask -> latent ids


def token_activations(f: SetFeatures) -> TokenActivations:
    n = len(f.offsets) - 1
    lengths = np.diff(f.offsets)
    return TokenActivations(
        token_ids=f.token_ids.astype(np.int64),
        sample=np.repeat(np.arange(n), lengths).astype(np.int64),
        position=np.concatenate([np.arange(m) for m in lengths]).astype(np.int32) if n else np.zeros(0, np.int32),
        latents=f.latents, values=f.values)


def subset(tokens: TokenActivations, samples: np.ndarray) -> TokenActivations:
    keep = np.isin(tokens.sample, samples)
    return TokenActivations(tokens.token_ids[keep], tokens.sample[keep], tokens.position[keep],
                            tokens.latents[keep], tokens.values[keep])


def controlled(f: SetFeatures, baseline_tokens: TokenActivations, d_sae: int) -> np.ndarray:
    """Per-sample max excess over the benign per-token mean (the library's token control)."""
    return context_excess(token_activations(f), token_baseline(baseline_tokens, d_sae), len(f.offsets) - 1)[0]


def score_sets(feats: dict[str, SetFeatures], decoder: np.ndarray, ids: list[int]) -> dict[str, np.ndarray]:
    prox = feature_proximity(decoder, ids, [1.0] * len(ids), 1, "sq-excess").proximity
    return {name: geometric_scores(f.max_acts, prox) for name, f in feats.items()}


def cross_validated_pairs(feats: dict[str, SetFeatures], decoder: np.ndarray, selector: Selector,
                          folds: int = 5) -> tuple[float, float]:
    """AUROC and pairwise accuracy on the tuning pairs, each fold scored by a selection made without it."""
    pairs = feats["pairs_tune"]
    ph, pb = pair_split(pairs)
    fold_of = np.arange(len(ph)) % folds
    scores = np.zeros(len(pairs.labels))
    for fold in range(folds):
        ids = selector(fold_of != fold)
        prox = feature_proximity(decoder, ids, [1.0] * len(ids), 1, "sq-excess").proximity
        held = np.concatenate([ph[fold_of == fold], pb[fold_of == fold]])
        scores[held] = geometric_scores(pairs.max_acts[held], prox)
    pair_acc = float(np.mean((scores[ph] > scores[pb]) + 0.5 * (scores[ph] == scores[pb])))
    used = np.concatenate([ph, pb])
    return round(auroc(scores[used], pairs.labels[used]), 3), round(pair_acc, 3)


def mean_activations(f: SetFeatures, d_sae: int) -> np.ndarray:
    """Per sample, each latent's mean activation over its scored tokens (`--aggregation mean`)."""
    n = len(f.offsets) - 1
    out = np.zeros((n, d_sae), np.float32)
    sample_of = np.repeat(np.repeat(np.arange(n), np.diff(f.offsets)), f.latents.shape[1])
    np.add.at(out, (sample_of, f.latents.ravel()), f.values.ravel())
    return out / np.maximum(np.diff(f.offsets), 1)[:, None]


def labels_of(ids: list[int], f: SetFeatures, decode, rows: np.ndarray | None = None, n: int = 6) -> list[str]:
    """The tokens where each latent peaks most in a set (from the sparse per-token activations)."""
    out = []
    keep = np.ones(len(f.token_ids), bool) if rows is None else np.isin(np.repeat(np.arange(len(f.offsets) - 1), np.diff(f.offsets)), rows)
    for i in ids:
        value = np.where((f.latents == i) & keep[:, None], f.values, 0).max(1)
        top = np.argsort(-value)[:n]
        out.append("/".join(decode([int(f.token_ids[t])]).strip() for t in top if value[t] > 0))
    return out


def explore_layer(layer: int, args: argparse.Namespace, tokenizer, names: tuple[str, ...]) -> None:
    started = time.perf_counter()
    sae = load_sae("saefilter/defaults/sae" if layer == 4 else str(args.sae_dir / f"layer_{layer}"))
    d_sae = sae.d_sae
    feats = {name: encode_set(sae, args.resid / "resid" / name, f"blocks.{layer}.hook_resid_post") for name in names}
    if args.aggregation == "mean":
        for f in feats.values():
            f.max_acts = mean_activations(f, d_sae)
    decoder = sae.sae.W_dec.detach().float().numpy()
    print(f"layer {layer}: encoded in {time.perf_counter() - started:.0f} s", flush=True)
    pairs = feats["pairs_tune"]
    ph, pb = pair_split(pairs)
    tox_h, tox_b = feats["ref_toxicity_harmful"], feats["ref_toxicity_benign"]
    int_h, int_b = feats["builtin_intent_harmful"], feats["builtin_intent_benign"]
    ex_tox_h, ex_tox_b = (controlled(f, token_activations(tox_b), d_sae) for f in (tox_h, tox_b))
    ex_int_h, ex_int_b = (controlled(f, token_activations(int_b), d_sae) for f in (int_h, int_b))
    pair_tokens = token_activations(pairs)
    # identity filter: how often a latent fires on neutral sentences that mention identity groups and
    # names (data/contrasts/identity_neutral.txt) against other benign text
    freq_group = (feats["identity_neutral"].max_acts > 0).mean(0)
    freq_other = np.concatenate([(tox_b.max_acts > 0), (int_b.max_acts > 0), (pairs.max_acts[pb] > 0)]).mean(0)
    identity_latent = (freq_group >= 0.05) & (freq_group > 3 * freq_other + 0.02)

    def pair_stat(train: np.ndarray, token_control: bool) -> tuple[np.ndarray, np.ndarray]:
        h, b = ph[train], pb[train]
        if token_control:
            acts = context_excess(pair_tokens, token_baseline(subset(pair_tokens, b), d_sae), len(pairs.labels))[0]
        else:
            acts = pairs.max_acts
        return paired_t(acts[h], acts[b]), (acts[h] > 0).mean(0)

    def pairs_selector(n: int, token_control: bool, filt: np.ndarray | None = None, stable: bool = False) -> Selector:
        def select(train: np.ndarray) -> list[int]:
            t, freq = pair_stat(train, token_control)
            eligible = freq >= 0.03
            if filt is not None:
                eligible &= ~filt
            if not stable:
                return top_by(t, eligible, n)
            # stability: rank by the smaller t of two halves of the training pairs
            idx = np.flatnonzero(train)
            halves = [np.isin(np.arange(len(train)), idx[j::2]) for j in (0, 1)]
            t_min = np.minimum(*(pair_stat(hv, token_control)[0] for hv in halves))
            return top_by(t_min, eligible, n)
        return select

    tox_d = cohens_d(ex_tox_h, ex_tox_b)
    int_d = cohens_d(ex_int_h, ex_int_b)
    tox_ok = ((ex_tox_h > 0).mean(0) >= 0.02) & ((tox_b.max_acts > 0).mean(0) <= 0.5)
    int_ok = ((ex_int_h > 0).mean(0) >= 0.02) & ((int_b.max_acts > 0).mean(0) <= 0.5)

    def fixed(ids: list[int]) -> Selector:
        return lambda _train: ids

    def merged(*parts: Selector, each: int) -> Selector:
        def select(train: np.ndarray) -> list[int]:
            out: list[int] = []
            for part in parts:
                out += [i for i in part(train) if i not in out][:each]
            return out
        return select

    code_h, code_b = feats["builtin_code_harmful"], feats["builtin_code_benign"]
    code_t = paired_t(code_h.max_acts, code_b.max_acts)
    code_ok = ((code_h.max_acts > 0).mean(0) >= 0.05) & ~identity_latent
    ex_code_h, ex_code_b = (controlled(f, token_activations(code_b), d_sae) for f in (code_h, code_b))
    code_tc_t = paired_t(ex_code_h, ex_code_b)
    # the geometric control: latents whose decoder rows point along the mean-residual difference
    # of the harmful and benign tuning answers (computed without the held-out fold)
    resid = sample_vectors(args.resid / "resid" / "pairs_tune", layer, "mean")[0]
    unit_decoder = decoder / np.maximum(np.linalg.norm(decoder, axis=1, keepdims=True), 1e-9)

    def direction_selector(n: int, with_t: bool = False) -> Selector:
        def select(train: np.ndarray) -> list[int]:
            d = resid[ph[train]].mean(0) - resid[pb[train]].mean(0)
            cos = unit_decoder @ (d / np.linalg.norm(d))
            eligible = ((pairs.max_acts[ph[train]] > 0).mean(0) >= 0.03) & ~identity_latent
            if with_t:
                t, _ = pair_stat(train, False)
                return top_by(np.where(cos > 0.05, t, 0.0), eligible, n)
            return top_by(cos, eligible, n)
        return select

    n = args.n
    tox = fixed(top_by(tox_d, tox_ok, n))
    tox_f = fixed(top_by(tox_d, tox_ok & ~identity_latent, n))
    intent = fixed(top_by(int_d, int_ok, n))
    intent_f = fixed(top_by(int_d, int_ok & ~identity_latent, n))
    variants: dict[str, Selector] = {
        "tc tox": tox,
        "tc tox, id-filter": tox_f,
        "tc tox+int": merged(tox, intent, each=n // 2),
        "pairs t (no tc)": pairs_selector(n, False),
        "pairs tc t": pairs_selector(n, True),
        "pairs tc t, id-filter": pairs_selector(n, True, identity_latent),
        "pairs tc t, stable, id-filter": pairs_selector(n, True, identity_latent, stable=True),
        "tox+int+pairs tc, id-filter": merged(tox_f, intent_f, pairs_selector(n, True, identity_latent), each=n // 3),
        "tox+pairs tc, id-filter": merged(tox_f, pairs_selector(n, True, identity_latent), each=n // 2),
        "tox+pairs tc stable, id-filter": merged(tox_f, pairs_selector(n, True, identity_latent, stable=True), each=n // 2),
        "int+pairs tc, id-filter": merged(intent_f, pairs_selector(n, True, identity_latent), each=n // 2),
    }
    pairs_raw_f = pairs_selector(n, False, identity_latent)
    variants.update({
        "pairs t, id-filter": pairs_raw_f,
        "pairs t, stable, id-filter": pairs_selector(n, False, identity_latent, stable=True),
        "code paired t": fixed(top_by(code_t, code_ok, n)),
        "code paired tc t": fixed(top_by(code_tc_t, code_ok, n)),
        "pairs t + code paired t": merged(pairs_raw_f, fixed(top_by(code_t, code_ok, n)), each=n // 2),
        "tox + pairs t, id-filter": merged(tox_f, pairs_raw_f, each=n // 2),
        "tox+int+pairs t, id-filter": merged(tox_f, intent_f, pairs_raw_f, each=n // 3),
        "direction cos": direction_selector(n),
        "direction cos>0.05, by pairs t": direction_selector(n, with_t=True),
        "pairs t, 25": pairs_selector(25, False, identity_latent),
        "pairs t, 100": pairs_selector(100, False, identity_latent),
    })
    pairs_tc_f = pairs_selector(n, True, identity_latent)
    variants.update({
        "pairs tc t + pairs t": merged(pairs_tc_f, pairs_raw_f, each=n // 2),
        "pairs tc t, 25": pairs_selector(25, True, identity_latent),
        "pairs tc t, 100": pairs_selector(100, True, identity_latent),
        "pairs tc t, 200": pairs_selector(200, True, identity_latent),
        "tox + pairs tc t": merged(tox_f, pairs_tc_f, each=n // 2),
        "tox + int + pairs tc t + pairs t": merged(tox_f, intent_f, pairs_tc_f, pairs_raw_f, each=n // 4),
        "pairs tc t + pairs t + code tc": merged(pairs_tc_f, pairs_raw_f, fixed(top_by(code_tc_t, code_ok, n)), each=n // 3),
    })
    only = [v.strip() for v in args.only.split(";")] if args.only else None
    if only:
        variants = {k: v for k, v in variants.items() if k in only}
    everything = np.ones(len(ph), bool)
    results = {}
    for name, selector in variants.items():
        ids = selector(everything)
        scored = score_sets(feats, decoder, ids)
        result = measure(scored, feats)
        result["pairs_cv_auroc"], result["pairs_cv_pairacc"] = cross_validated_pairs(feats, decoder, selector)
        result["n"] = len(ids)
        result["identity_latents_chosen"] = int(identity_latent[ids].sum())
        result["labels"] = labels_of(ids[:12], pairs, tokenizer.decode, rows=ph)
        results[name] = {**result, "ids": ids}
        print(f"L{layer} {name:34s} cv-pairs {result['pairs_cv_auroc']:.3f}/{result['pairs_cv_pairacc']:.3f} "
              f"em_out {result['em_outputs_dev']:.3f} hh {result['hh_dev_pairacc']:.3f} tox {result['toxigen_dev']:.3f} "
              f"insec {result['em_dev']:.3f} form {result['heldout']:.3f} mixed {result['mixed_all_harmful_first']} "
              f"mixedAUROC {result['mixed_chat']:.3f} id {result['identity_pct_spread_mean']:.3f}", flush=True)
    print(f"identity latents: {int(identity_latent.sum())}")
    (args.out / f"layer_{layer}_{args.aggregation}.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="16,20")
    parser.add_argument("--resid", type=Path, default=Path("artifacts/explore_matched"))
    parser.add_argument("--sae-dir", type=Path, default=Path("artifacts/sae"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/explore_harm"))
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--aggregation", choices=("max", "mean"), default="max")
    parser.add_argument("--only", default="", help="';'-separated variant names to run")
    args = parser.parse_args()
    from saefilter.model.loading import DEFAULT_MODEL, load_tokenizer

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    args.out.mkdir(parents=True, exist_ok=True)
    names = (*DEV_SETS, "identity", "identity_neutral", "ref_toxicity_harmful", "ref_toxicity_benign",
                 "builtin_intent_harmful", "builtin_intent_benign", "builtin_code_harmful", "builtin_code_benign")
    for layer in [int(x) for x in args.layers.split(",")]:
        explore_layer(layer, args, tokenizer, names)

if __name__ == "__main__":
    main()
