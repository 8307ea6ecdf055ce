#!/usr/bin/env python
"""Development exploration: could labels come from what a latent writes rather than where it fires?

Each harmful latent's decoder row, through the model's final norm and unembedding (the "logit lens"),
gives the tokens it promotes most and least. Printed beside the shipped label for the first --n latents.

    python scripts/explore_logit_lens.py --n 60
"""

from __future__ import annotations

import argparse

import torch

from saefilter.config import resolve_features_path, resolve_sae_spec
from saefilter.features.feature_set import load_feature_set
from saefilter.model.loading import DEFAULT_MODEL, load_model
from saefilter.sae.loading import load_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="embedded")
    parser.add_argument("--sae", default="embedded")
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    lm = load_model(DEFAULT_MODEL, device="cpu", dtype="float32")
    decoder = load_sae(resolve_sae_spec(args.sae)).sae.W_dec.detach().float()
    norm = lm.model.model.norm.weight.detach().float()
    unembed = lm.model.lm_head.weight.detach().float()
    for feature in load_feature_set(resolve_features_path(args.features)).features[: args.n]:
        logits = unembed @ (decoder[feature.index] * norm)
        up = [lm.tokenizer.decode([t]) for t in torch.topk(logits, 8).indices.tolist()]
        down = [lm.tokenizer.decode([t]) for t in torch.topk(-logits, 5).indices.tolist()]
        print(f"{feature.index} | {feature.label} | promotes {up} | suppresses {down}")


if __name__ == "__main__":
    main()
