#!/usr/bin/env python
"""Development exploration, round 5: how many latents, and the dark topics harm comes with.

`data/matched/hard_negatives.jsonl` holds benign answers *about* dark topics (a battle, an overdose,
a scam, a hate crime, grief, a sad poem). Variants of the shipped selection (the built-in answers
contrast, token-controlled, paired, identity filter, plus its probe direction), measured on the dev
encodings of `scripts/benchmark_quality.py --split dev` (run that first: it fills the cache):

- top N: how many latents beside the direction (the shipped set has 200; round 2 found 50 better on
  the EM-model outputs without a direction);
- hard negatives in the direction: the probe's benign side gets the `tune` hard negatives beside
  the benign tuning answers, so its direction has to separate harm from dark-but-benign text too;
- topic exclusion (rho): leave out latents whose mean activation on the hard negatives reaches rho
  times their mean activation on the harmful tuning answers (they fire on the topic or mood).

Round 5 had no function-word filter (round 6, `explore_function_words.py`), so none runs here.
Own pairs and the hard negatives' dev rows are in-sample for every variant here (the selection and
the probe used them); the report halves are read only by `benchmark_quality.py --split test`.
The forward passes are kept in --save/encoded.pkl, so a second run with other variants is quick.

    python scripts/explore_round5.py --tops 50,100,200 --rhos 0.5,1.0
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchmark_quality import benchmark_sets, cache_key, hard_negative_chats
from explore_probe_weights import metrics

from saefilter.config import ScoreConfig, resolve_sae_spec
from saefilter.evaluation.evaluate import geometric_scores
from saefilter.features.direction import DirectionSettings, with_direction
from saefilter.features.feature_set import save_feature_set
from saefilter.features.selection import (
    ContrastTexts,
    SelectionSettings,
    contrast_activations,
    encode_contrasts,
    identity_exclusion,
    select_from_encoded,
)
from saefilter.inputs.reference import (
    builtin_benign_texts,
    builtin_contrasts,
    builtin_identity_texts,
    read_reference,
    reference_categories,
)
from saefilter.model.activations import FeatureEncoder
from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.loading import load_sae

DEV_SETS = ("own pairs", "EM-model outputs", "HH-RLHF harmless", "ToxiGen same-group", "insecure vs secure",
            "harmful vs benign (form-confounded)", "hard negatives (dark topics)", "mixed_chat")


def topic_latents(hard_negative_acts: np.ndarray, harmful_acts: np.ndarray, rho: float) -> np.ndarray:
    """[d_sae] bool: latents whose mean activation on benign dark-topic answers reaches `rho` times
    their mean on harmful answers."""
    return hard_negative_acts.mean(0) >= rho * np.maximum(harmful_acts.mean(0), 1e-9)


def variant_cells(feature_set, decoder: np.ndarray, config: ScoreConfig, sets: dict, acts: dict, usable: dict
                  ) -> tuple[str, list[int]]:
    """A variant's table cells (AUROC, / pairwise where rows pair) on every set in `acts` but
    mixed_chat, and the ranks of mixed_chat's harmful rows."""
    proximity = feature_set.proximity(decoder, config.neighbours, config.kernel).proximity
    row = {n: metrics(sets, usable, n, geometric_scores(acts[n], proximity)) for n in acts}
    mixed = geometric_scores(acts["mixed_chat"], proximity)
    y = sets["mixed_chat"].labels[usable["mixed_chat"]]
    ranks = sorted(int(np.flatnonzero(np.argsort(-mixed, kind="stable") == i)[0]) + 1 for i in np.flatnonzero(y == 1))
    cells = " | ".join(f"{v['auroc']:.3f}" + (f" / {v['pairwise']:.3f}" if "pairwise" in v else "")
                       for n, v in row.items() if n != "mixed_chat")
    return cells, ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tops", default="200")
    parser.add_argument("--rhos", default="")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--save", type=Path, default=Path("artifacts/explore_round5"),
                        help="each variant's feature set is written here")
    args = parser.parse_args()
    config = ScoreConfig()
    lm = load_model(DEFAULT_MODEL, device="auto", dtype="float32")
    loaded = load_sae(resolve_sae_spec("embedded", DEFAULT_MODEL))
    encoder = FeatureEncoder(lm, loaded)
    decoder = loaded.sae.W_dec.detach().float().numpy()
    answers = builtin_contrasts(("answers",))[0]
    contrast = ContrastTexts(answers.name, list(read_reference(answers.harmful)), list(read_reference(answers.benign)), True,
                             reference_categories([answers.harmful]))
    passes = ("response", 512, 16, 8192, None)
    stored = args.save / "encoded.pkl"
    if stored.exists():
        encoded, identity, hard = pickle.loads(stored.read_bytes())
    else:
        encoded = encode_contrasts(encoder, [contrast], *passes, with_means=True)
        identity = identity_exclusion(encoder, encoded, builtin_identity_texts(), builtin_benign_texts(), *passes)
        hard = contrast_activations(encoder, hard_negative_chats("tune"), *passes, with_means=True)
        args.save.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(pickle.dumps((encoded, identity, hard)))
    sides = encoded[0]
    meta = {"contrasts": "built-in", "model": DEFAULT_MODEL, "tokens": "response", "hook": loaded.hook.name}
    direction = DirectionSettings(config.aggregation, config.neighbours, config.kernel)

    def build(exclude: np.ndarray, probe_benign_extra: bool, top: int = 200):
        settings = SelectionSettings(top=top, function_word_filter=False)
        latents = select_from_encoded(encoded, settings, lm.tokenizer.decode, "embedded", loaded.d_sae, meta, None, exclude)
        benign_resid = sides.benign.mean_residual
        if probe_benign_extra:
            benign_resid = np.concatenate([benign_resid, hard.mean_residual])
        return with_direction(latents, sides.harmful.mean_residual, benign_resid, sides.benign.aggregated("mean"),
                              decoder, loaded.hook.name, "built-in answers contrast", direction)

    variants = {}
    for top in (int(t) for t in args.tops.split(",")):
        variants[f"top {top}"] = build(identity, False, top)
        variants[f"top {top} + hard negatives in the probe"] = build(identity, True, top)
    for rho in (float(r) for r in args.rhos.split(",") if r):
        topical = topic_latents(hard.mean_acts, sides.harmful.mean_acts, rho)
        print(f"rho {rho:g}: {int((topical & ~identity).sum())} topic latents beside {int(identity.sum())} identity ones")
        variants[f"topic exclusion rho {rho:g}"] = build(identity | topical, False)
        variants[f"topic exclusion rho {rho:g} + hard negatives in the probe"] = build(identity | topical, True)

    sets = benchmark_sets("dev", 500)
    acts, usable = {}, {}
    for name in DEV_SETS:
        stored = np.load(args.cache / cache_key(loaded.fingerprint, "dev", 500, name))
        acts[name], usable[name] = stored["mean_acts"], stored["usable"]
    args.save.mkdir(parents=True, exist_ok=True)
    # the last column: how many of the variant's latents the shipped selection (top 200) also has
    reference = {f.index for f in (variants.get("top 200") or build(identity, False)).features}
    for name, feature_set in variants.items():
        cells, ranks = variant_cells(feature_set, decoder, config, sets, acts, usable)
        kept = len(reference & {f.index for f in feature_set.features})
        print(f"| {name} | {cells} | {', '.join(map(str, ranks))} | {kept} |", flush=True)
        path = args.save / (name.replace(" ", "_").replace("+", "and") + ".json")
        save_feature_set(replace(feature_set, meta={**feature_set.meta, "variant": name}), path)


if __name__ == "__main__":
    main()
