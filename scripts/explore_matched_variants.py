"""Selection variants for scripts/explore_matched.py (see its docstring): each picks harmful latents
from the selection data only (reference contrasts, tuning pairs), then every development set is scored
with the geometric score and measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from explore_matched import SetFeatures, encode_set, sae_for_layer

from saefilter.evaluation.evaluate import geometric_scores
from saefilter.evaluation.metrics import auroc
from saefilter.scoring.proximity import feature_proximity, unit_rows

DEV_SETS = ("pairs_tune", "em_outputs_dev", "hh_dev", "toxigen_dev", "em_dev", "heldout", "mixed_chat")
SELECTION_SETS = ("ref_toxicity_harmful", "ref_toxicity_benign", "ref_intent_harmful", "ref_intent_benign", "pairs_tune")


def token_max_scores(f: SetFeatures, proximity: np.ndarray, how: str = "max") -> np.ndarray:
    """Per token, the activation-weighted mean proximity of its active latents; per sample, the max
    (or the mean of the top 3) over its tokens: the most harmful moment rather than the whole."""
    per_token = (f.values * proximity[f.latents]).sum(1) / np.maximum(f.values.sum(1), 1e-9)
    n = len(f.offsets) - 1
    if how == "max":
        return np.maximum.reduceat(per_token, f.offsets[:-1]) if n else np.zeros(0)
    return np.array([np.sort(per_token[f.offsets[i]:f.offsets[i + 1]])[-3:].mean() for i in range(n)])


def cohens_d(h: np.ndarray, b: np.ndarray) -> np.ndarray:
    pooled = np.sqrt(((len(h) - 1) * h.var(0, ddof=1) + (len(b) - 1) * b.var(0, ddof=1)) / (len(h) + len(b) - 2))
    return (h.mean(0) - b.mean(0)) / np.maximum(pooled, 1e-6)


def top_by(stat: np.ndarray, eligible: np.ndarray, n: int) -> list[int]:
    candidates = np.flatnonzero(eligible & (stat > 0))
    return [int(i) for i in candidates[np.argsort(-stat[candidates], kind="stable")][:n]]


def token_baseline(benign: list[SetFeatures], d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation of each latent on each token type over benign text: sparse keys and values."""
    keys, vals, counts = [], [], {}
    for f in benign:
        k = f.latents.shape[1]
        keys.append(np.repeat(f.token_ids.astype(np.int64), k) * d_sae + f.latents.ravel())
        vals.append(f.values.ravel())
        for t, c in zip(*np.unique(f.token_ids, return_counts=True), strict=True):
            counts[int(t)] = counts.get(int(t), 0) + int(c)
    all_keys, all_vals = np.concatenate(keys), np.concatenate(vals)
    nz = all_vals > 0
    uniq, inverse = np.unique(all_keys[nz], return_inverse=True)
    sums = np.bincount(inverse, weights=all_vals[nz])
    n_of_token = np.array([counts[int(t)] for t in uniq // d_sae], dtype=np.float64)
    return uniq, (sums / n_of_token).astype(np.float32)


def excess_max(f: SetFeatures, baseline: tuple[np.ndarray, np.ndarray], d_sae: int) -> np.ndarray:
    """Per sample, max over tokens of (activation - the latent's benign mean on that token type)."""
    uniq, mean = baseline
    k = f.latents.shape[1]
    keys = np.repeat(f.token_ids.astype(np.int64), k) * d_sae + f.latents.ravel()
    pos = np.clip(np.searchsorted(uniq, keys), 0, len(uniq) - 1)
    base = np.where(uniq[pos] == keys, mean[pos], 0.0)
    excess = np.maximum(f.values.ravel() - base, 0.0)
    n = len(f.offsets) - 1
    out = np.zeros((n, d_sae), np.float32)
    sample_of = np.repeat(np.repeat(np.arange(n), np.diff(f.offsets)), k)
    np.maximum.at(out, (sample_of, f.latents.ravel()), excess)
    return out


def pair_split(f: SetFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the harmful and the benign member of each pair, aligned."""
    by_pair: dict[str, dict[int, int]] = {}
    for i, (p, label) in enumerate(zip(f.pairs, f.labels, strict=True)):
        by_pair.setdefault(p, {})[int(label)] = i
    complete = [v for v in by_pair.values() if 0 in v and 1 in v]
    return np.array([v[1] for v in complete]), np.array([v[0] for v in complete])


def pairwise_accuracy(scores: np.ndarray, f: SetFeatures) -> float:
    h, b = pair_split(f)
    return float(np.mean((scores[h] > scores[b]) + 0.5 * (scores[h] == scores[b])))


def measure(scores: dict[str, np.ndarray], feats: dict[str, SetFeatures]) -> dict[str, float]:
    result = {}
    for name in DEV_SETS:
        result[name] = round(auroc(scores[name], feats[name].labels), 3)
    for name in ("pairs_tune", "hh_dev"):
        result[f"{name}_pairacc"] = round(pairwise_accuracy(scores[name], feats[name]), 3)
    mixed, labels = scores["mixed_chat"], feats["mixed_chat"].labels
    result["mixed_all_harmful_first"] = bool(mixed[labels == 1].min() > mixed[labels == 0].max())
    # identity: per template, spread of the score's percentile among all benign dev rows
    benign = np.sort(np.concatenate([scores[n][feats[n].labels == 0] for n in DEV_SETS if n != "mixed_chat"]))
    pct = np.searchsorted(benign, scores["identity"]) / len(benign)
    spreads = [np.ptp(pct[[i for i, t in enumerate(feats["identity"].pairs) if t == tmpl]])
               for tmpl in sorted(set(feats["identity"].pairs))]
    result["identity_pct_spread_mean"] = round(float(np.mean(spreads)), 3)
    result["identity_pct_spread_max"] = round(float(np.max(spreads)), 3)
    return result


def explore(layers: list[int], out: Path) -> None:
    for layer in layers:
        started = time.perf_counter()
        loaded = sae_for_layer(layer)
        hook = f"blocks.{layer}.hook_resid_post"
        d_sae = loaded.d_sae
        feats = {name: encode_set(loaded, out / "resid" / name, hook) for name in (*DEV_SETS, "identity", *SELECTION_SETS)
                 if name not in ()}
        decoder = loaded.sae.W_dec.detach().float().numpy()
        print(f"layer {layer}: encoded in {time.perf_counter() - started:.0f} s", flush=True)

        tox_h, tox_b = feats["ref_toxicity_harmful"], feats["ref_toxicity_benign"]
        int_h, int_b = feats["ref_intent_harmful"], feats["ref_intent_benign"]
        pairs = feats["pairs_tune"]
        ph, pb = pair_split(pairs)
        baseline = token_baseline([tox_b, int_b], d_sae)
        ex = {name: excess_max(f, baseline, d_sae) for name, f in
              (("tox_h", tox_h), ("tox_b", tox_b), ("int_h", int_h), ("int_b", int_b), ("pairs", pairs))}

        def freq(a: np.ndarray) -> np.ndarray:
            return (a > 0).mean(0)

        variants: dict[str, list[int]] = {}

        def old_contrast(h, b, n, max_bf=0.5):
            return top_by(cohens_d(h, b), (freq(h) >= 0.02) & (freq(b) <= max_bf), n)

        variants["old: tox25+int25 (d of max)"] = old_contrast(tox_h.max_acts, tox_b.max_acts, 25) + \
            old_contrast(int_h.max_acts, int_b.max_acts, 25)
        variants["token-ctl: tox25+int25"] = old_contrast(ex["tox_h"], ex["tox_b"], 25) + old_contrast(ex["int_h"], ex["int_b"], 25)
        variants["token-ctl: tox50"] = old_contrast(ex["tox_h"], ex["tox_b"], 50)
        variants["d of max: tox50"] = old_contrast(tox_h.max_acts, tox_b.max_acts, 50)
        diff = pairs.max_acts[ph] - pairs.max_acts[pb]
        t_pairs = diff.mean(0) / np.maximum(diff.std(0, ddof=1) / np.sqrt(len(diff)), 1e-6)
        variants["pairs: t of max diff, 50"] = top_by(t_pairs, freq(pairs.max_acts[ph]) >= 0.05, 50)
        ex_diff = ex["pairs"][ph] - ex["pairs"][pb]
        t_ex = ex_diff.mean(0) / np.maximum(ex_diff.std(0, ddof=1) / np.sqrt(len(ex_diff)), 1e-6)
        variants["pairs token-ctl: t, 50"] = top_by(t_ex, freq(ex["pairs"][ph]) >= 0.05, 50)
        variants["token-ctl tox25 + pairs t25"] = old_contrast(ex["tox_h"], ex["tox_b"], 25) + \
            [i for i in top_by(t_pairs, freq(pairs.max_acts[ph]) >= 0.05, 50) if i not in old_contrast(ex["tox_h"], ex["tox_b"], 25)][:25]
        # harm direction: difference of mean residuals over matched harmful/benign answers, then the
        # latents whose decoder rows point along it
        resid_means = {}
        for name in ("ref_toxicity_harmful", "ref_toxicity_benign", "pairs_tune"):
            r = np.load(out / "resid" / name / f"{hook}.npy").astype(np.float32)
            o = np.load(out / "resid" / name / "offsets.npy")
            resid_means[name] = np.add.reduceat(r, o[:-1], axis=0) / np.diff(o)[:, None]
        direction = (resid_means["ref_toxicity_harmful"].mean(0) - resid_means["ref_toxicity_benign"].mean(0)) / 2 + \
            (resid_means["pairs_tune"][ph].mean(0) - resid_means["pairs_tune"][pb].mean(0)) / 2
        cos = unit_rows(decoder) @ (direction / np.linalg.norm(direction))
        active_h = (freq(tox_h.max_acts) >= 0.02) | (freq(pairs.max_acts[ph]) >= 0.05)
        variants["direction: cos to mean-diff, 50"] = top_by(cos, active_h, 50)
        variants["direction: cos to mean-diff, 100"] = top_by(cos, active_h, 100)
        tox_dir = resid_means["ref_toxicity_harmful"].mean(0) - resid_means["ref_toxicity_benign"].mean(0)
        cos_tox = unit_rows(decoder) @ (tox_dir / np.linalg.norm(tox_dir))
        variants["direction (toxicity only): cos, 50"] = top_by(cos_tox, freq(tox_h.max_acts) >= 0.02, 50)
        pair_dir = resid_means["pairs_tune"][ph].mean(0) - resid_means["pairs_tune"][pb].mean(0)
        cos_pairs = unit_rows(decoder) @ (pair_dir / np.linalg.norm(pair_dir))
        variants["direction (pairs only): cos, 50"] = top_by(cos_pairs, freq(pairs.max_acts[ph]) >= 0.05, 50)
        d_tox_ctl = cohens_d(ex["tox_h"], ex["tox_b"])
        variants["token-ctl tox d x direction, 50"] = top_by(np.maximum(d_tox_ctl, 0) * np.maximum(cos, 0), active_h, 50)
        variants["direction: cos, 25"] = top_by(cos, active_h, 25)
        combined = cos * np.maximum(t_ex, 0)
        variants["direction x pairs token-ctl t, 50"] = top_by(combined, active_h, 50)

        rows = []
        for name, chosen in variants.items():
            for kernel in ("sq-excess", "linear"):
                proximity = feature_proximity(decoder, chosen, [1.0] * len(chosen), 1, kernel).proximity
                for aggregation in ("max", "token-max", "token-top3"):
                    if aggregation == "max":
                        scores = {n: geometric_scores(f.max_acts, proximity) for n, f in feats.items()}
                    else:
                        how = "max" if aggregation == "token-max" else "top3"
                        scores = {n: token_max_scores(f, proximity, how) for n, f in feats.items()}
                    rows.append({"layer": layer, "variant": name, "kernel": kernel, "aggregation": aggregation,
                                 "n": len(chosen), **measure(scores, feats), "features": chosen})
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "features"}), flush=True)
        (out / f"variants_L{layer}.json").write_text(json.dumps(rows, indent=1))
        print(f"layer {layer}: {time.perf_counter() - started:.0f} s", flush=True)
