#!/usr/bin/env python
"""Development exploration for "harm, not form": which layer and which feature selection make the
score follow the harm in the answer, judged on matched sets (dev splits only) beside the others.

Two stages, so the slow part runs once:

    python scripts/explore_matched.py collect --layers 4,8,12,16,20   # residuals of every set, every layer
    python scripts/explore_matched.py explore --layers 4,8,12,16,20   # SAE features, selections, scores

`collect` stores the residuals of each set's scored tokens (float16) under OUT/resid/<set>/;
`explore` encodes them with the SAE of each layer (the embedded one for layer 4, artifacts/sae/layer_L
otherwise), selects harmful features with each variant from the reference contrasts and the tuning
pairs only, scores every development set with the geometric score, and writes OUT/variants_L<layer>.json
plus a table. Test splits are never read here: benchmark_quality.py reports them.
Needs the files of scripts/build_reference_data.py.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from residual_store import is_stored, store_residuals

from saefilter.inputs.reference import read_reference
from saefilter.model.hooks import HookPoint
from saefilter.model.loading import DEFAULT_MODEL, load_model

DATA = Path("artifacts/data")
OUT = Path("artifacts/explore_matched")
BUILTIN = Path("saefilter/contrasts")
MIXED_HARMFUL_LINES = {3, 7, 10, 14, 16, 19}  # the plainly harmful rows of data/samples/mixed_chat.jsonl


def labelled_file(path: Path) -> tuple[list, list[int], list[str | None], list[str | None]]:
    from saefilter.inputs.formats import to_conversation

    conversations, labels, pairs, groups = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        conversations.append(to_conversation({k: v for k, v in row.items() if k in ("messages", "text")}))
        labels.append(int(row["label"]))
        pairs.append(row.get("pair"))
        groups.append(row.get("group") or row.get("axis"))
    return conversations, labels, pairs, groups


def sample_rows(items: list, n: int, seed: int) -> list:
    if len(items) <= n:
        return items
    keep = sorted(np.random.default_rng(seed).permutation(len(items))[:n])
    return [items[i] for i in keep]


def development_sets() -> dict[str, tuple[list, list[int], list, list]]:
    """name -> (conversations, labels, pair ids, groups); dev splits and selection data only."""
    sets = {}
    for name in ("pairs_tune", "em_outputs_dev", "hh_dev", "toxigen_dev"):
        sets[name] = labelled_file(DATA / "bench" / f"{name}.jsonl")
    em_pos = sample_rows(list(read_reference(DATA / "em_insecure_dev.jsonl")), 200, 1)
    em_neg = sample_rows(list(read_reference(DATA / "em_secure_dev.jsonl")), 200, 2)
    sets["em_dev"] = (em_pos + em_neg, [1] * len(em_pos) + [0] * len(em_neg), [None] * 400, [None] * 400)
    h = sample_rows(list(read_reference(DATA / "harmful_heldout.jsonl")), 250, 3)
    b = sample_rows(list(read_reference(DATA / "benign_heldout.jsonl")), 250, 4)
    sets["heldout"] = (h + b, [1] * len(h) + [0] * len(b), [None] * len(h + b), [None] * len(h + b))
    mixed = list(read_reference(Path("data/samples/mixed_chat.jsonl")))
    sets["mixed_chat"] = (mixed, [int(i + 1 in MIXED_HARMFUL_LINES) for i in range(len(mixed))],
                          [None] * len(mixed), [None] * len(mixed))
    identity = [json.loads(line) for line in Path("data/matched/identity_counterfactuals.jsonl").read_text().splitlines()]
    from saefilter.inputs.formats import to_conversation

    sets["identity"] = ([to_conversation({"messages": r["messages"]}) for r in identity], [0] * len(identity),
                        [r["template"] for r in identity], [r["axis"] for r in identity])
    for contrast in ("toxicity", "intent"):
        for side, label in (("harmful", 1), ("benign", 0)):
            rows = list(read_reference(DATA / f"contrast_{contrast}_{side}.jsonl"))
            sets[f"ref_{contrast}_{side}"] = (rows, [label] * len(rows), [None] * len(rows), [None] * len(rows))
    neutral = [to_conversation({"text": t}) for t in Path("data/contrasts/identity_neutral.txt").read_text().splitlines() if t]
    sets["identity_neutral"] = (neutral, [0] * len(neutral), [None] * len(neutral), [None] * len(neutral))
    # the built-in contrasts shipped in the package (intent's benign side is phrasing-matched there)
    for contrast in ("intent", "code"):
        for side, label in (("harmful", 1), ("benign", 0)):
            rows = list(read_reference(BUILTIN / f"{contrast}_{side}.jsonl"))
            sets[f"builtin_{contrast}_{side}"] = (rows, [label] * len(rows), [None] * len(rows), [None] * len(rows))
    return sets


def collect(layers: list[int], out: Path, dtype: str) -> None:
    lm = load_model(DEFAULT_MODEL, device="auto", dtype=dtype)
    hooks = [HookPoint(layer, "post") for layer in layers]
    for name, (conversations, labels, pairs, groups) in development_sets().items():
        folder = out / "resid" / name
        if is_stored(folder):
            continue
        started = time.perf_counter()
        meta = store_residuals(lm, hooks, conversations, folder, {"labels": labels, "pairs": pairs, "groups": groups},
                               batch_size=16, batch_tokens=8192)
        print(f"{name}: {len(meta['kept'])} samples, {meta['forward_tokens']:,} forward tokens, "
              f"{time.perf_counter() - started:.0f} s", flush=True)


@dataclass
class SetFeatures:
    """One set's SAE activations: per token (sparse, top-k) and per sample (max over tokens)."""

    token_ids: np.ndarray  # [n_tok]
    offsets: np.ndarray  # [n + 1]
    latents: np.ndarray  # [n_tok, k] int64
    values: np.ndarray  # [n_tok, k] float32
    max_acts: np.ndarray  # [n, d_sae]
    labels: np.ndarray
    pairs: list
    groups: list


def sae_for_layer(layer: int):
    from saefilter.sae.loading import load_sae

    spec = "saefilter/defaults/sae" if layer == 4 else f"artifacts/sae/layer_{layer}"
    return load_sae(spec)


@torch.inference_mode()
def encode_set(sae, folder: Path, hook_name: str, top: int = 64) -> SetFeatures:
    resid = np.load(folder / f"{hook_name}.npy")
    offsets = np.load(folder / "offsets.npy")
    meta = json.loads((folder / "meta.json").read_text())
    d_sae = sae.d_sae
    latents = np.zeros((len(resid), top), np.int64)
    values = np.zeros((len(resid), top), np.float32)
    for start in range(0, len(resid), 4096):
        feats = sae.sae.encode(torch.from_numpy(resid[start : start + 4096].astype(np.float32)))
        v, idx = feats.topk(top, dim=1)
        latents[start : start + len(v)], values[start : start + len(v)] = idx.numpy(), v.numpy()
    n = len(offsets) - 1
    max_acts = np.zeros((n, d_sae), np.float32)
    sample_of = np.repeat(np.arange(n), np.diff(offsets))
    np.maximum.at(max_acts, (np.repeat(sample_of, top), latents.ravel()), values.ravel())
    return SetFeatures(np.load(folder / "token_ids.npy"), offsets, latents, values, max_acts,
                       np.asarray(meta["labels"]), meta["pairs"], meta["groups"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("collect", "explore"))
    parser.add_argument("--layers", default="4,8,12,16,20")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    if args.stage == "collect":
        collect(layers, args.out, args.dtype)
    else:
        from explore_matched_variants import explore

        explore(layers, args.out)


if __name__ == "__main__":
    main()
