#!/usr/bin/env python
"""Development exploration, round 6: the function-word filter of feature selection.

Round 5's labels led with kinds of harm, but 38 of the default's 200 latents peaked mostly on
function words or punctuation ('of', 'be', 'Just', '.)', '<|im_end|>'), and one of them (1198, '.',
'down', 'never') put a benign autumn haiku third in mixed_chat. Variants of the shipped selection
(the built-in answers contrast, token-controlled, paired, identity filter, top N, plus its probe
direction with the tune hard negatives), each with the filter off or passing over latents whose
top-10 peak words are at least SHARE function words, measured on the dev encodings of
`scripts/benchmark_quality.py --split dev` (run it first: it fills the cache). The forward passes
are `scripts/explore_round5.py`'s (its --save/encoded.pkl; run it once first).

    python scripts/explore_function_words.py --shares 0.34,0.5,0.67 --tops 150,200
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchmark_quality import benchmark_sets, cache_key
from explore_round5 import DEV_SETS, variant_cells

from saefilter.config import ScoreConfig, resolve_sae_spec
from saefilter.features.direction import DirectionSettings, with_direction
from saefilter.features.feature_set import save_feature_set
from saefilter.features.selection import SelectionSettings, select_from_encoded
from saefilter.model.loading import DEFAULT_MODEL, load_tokenizer
from saefilter.sae.loading import load_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="0.5")
    parser.add_argument("--tops", default="200")
    parser.add_argument("--split", default="dev", choices=("dev", "test"),
                        help="test only for the variant chosen on dev")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/quality/cache"))
    parser.add_argument("--encoded", type=Path, default=Path("artifacts/explore_round5/encoded.pkl"))
    parser.add_argument("--save", type=Path, default=Path("artifacts/explore_function_words"))
    args = parser.parse_args()
    config = ScoreConfig()
    decode = load_tokenizer(DEFAULT_MODEL).decode
    loaded = load_sae(resolve_sae_spec("embedded", DEFAULT_MODEL))
    decoder = loaded.sae.W_dec.detach().float().numpy()
    encoded, identity, hard = pickle.loads(args.encoded.read_bytes())
    sides = encoded[0]
    meta = {"contrasts": "built-in", "model": DEFAULT_MODEL, "tokens": "response", "hook": loaded.hook.name}
    direction = DirectionSettings(config.aggregation, config.neighbours, config.kernel)

    def build(top: int, share: float | None):
        settings = SelectionSettings(top=top, function_word_filter=share is not None, function_word_share=share or 0.5)
        latents = select_from_encoded(encoded, settings, decode, "embedded", loaded.d_sae, meta, None, identity)
        benign_resid = np.concatenate([sides.benign.mean_residual, hard.mean_residual])
        return with_direction(latents, sides.harmful.mean_residual, benign_resid, sides.benign.aggregated("mean"),
                              decoder, loaded.hook.name, "built-in answers contrast", direction)

    variants = {}
    for top in (int(t) for t in args.tops.split(",")):
        variants[f"top {top}, no filter"] = build(top, None)
        for share in (float(s) for s in args.shares.split(",")):
            variants[f"top {top}, function words < {share:g}"] = build(top, share)

    sets = benchmark_sets(args.split, 500)
    names = [n for n in DEV_SETS if n in sets]
    acts, usable = {}, {}
    for name in names:
        stored = np.load(args.cache / cache_key(loaded.fingerprint, args.split, 500, name))
        acts[name], usable[name] = stored["mean_acts"], stored["usable"]
    args.save.mkdir(parents=True, exist_ok=True)
    print("| variant | " + " | ".join(n for n in names if n != "mixed_chat") + " | mixed_chat harmful ranks | passed over |")
    for name, feature_set in variants.items():
        cells, ranks = variant_cells(feature_set, decoder, config, sets, acts, usable)
        passed = len(feature_set.meta["selection"].get("function_word_latents_passed_over", []))
        print(f"| {name} | {cells} | {', '.join(map(str, ranks))} | {passed} |", flush=True)
        path = args.save / (name.replace(" ", "_").replace(",", "").replace("<", "lt") + ".json")
        save_feature_set(replace(feature_set, meta={**feature_set.meta, "variant": name}), path)


if __name__ == "__main__":
    main()
