"""Answer-token residuals of a set of conversations, stored once so later stages need no forward pass.

One folder per set: `<hook>.npy` ([n_tokens, d_model] float16, the scored tokens of every usable row
in order), `offsets.npy` (row i's tokens are offsets[i]:offsets[i + 1]), `token_ids.npy`, `meta.json`
(which input rows were usable, plus what the caller adds) and a `done` marker written last, so a
stopped collection redoes only the set it was in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from saefilter.features.selection import encode_each
from saefilter.inputs.formats import Conversation
from saefilter.model.activations import length_batches, pad_batch
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residuals_at
from saefilter.model.loading import LoadedModel


def is_stored(folder: Path) -> bool:
    return (folder / "done").exists()


def store_residuals(lm: LoadedModel, hooks: list[HookPoint], conversations: list[Conversation], folder: Path,
                    meta: dict, batch_size: int = 8, batch_tokens: int = 4096, max_tokens: int = 1024) -> dict:
    """Write the set's store (see the module doc) and return its meta: `meta` with `kept` (usable input
    rows; every entry of `meta` that is a per-row list is cut to them), `n_input` and `forward_tokens`."""
    folder.mkdir(parents=True, exist_ok=True)
    encoded = encode_each(conversations, lm.tokenizer, "response", max_tokens)
    keep = [i for i, s in enumerate(encoded) if s is not None]
    samples = [encoded[i] for i in keep]
    offsets = np.concatenate([[0], np.cumsum([s.n_scored for s in samples])]).astype(np.int64)
    store = {h.name: np.zeros((offsets[-1], lm.model.config.hidden_size), np.float16) for h in hooks}
    for batch in length_batches([len(s.input_ids) for s in samples], batch_size, batch_tokens):
        ids, attention, scored = pad_batch([samples[i] for i in batch], lm.tokenizer.pad_token_id)
        with torch.inference_mode():
            captured = residuals_at(lm.model, hooks, ids, attention)
        for hook_name, resid in captured.items():
            parts = torch.split(resid[scored].float(), [samples[i].n_scored for i in batch])
            for i, part in zip(batch, parts, strict=True):
                store[hook_name][offsets[i] : offsets[i + 1]] = part.numpy().astype(np.float16)
    for hook_name, array in store.items():
        np.save(folder / f"{hook_name}.npy", array)
    np.save(folder / "offsets.npy", offsets)
    token_ids = [np.asarray(s.input_ids)[np.asarray(s.scored, bool)] for s in samples]
    np.save(folder / "token_ids.npy", np.concatenate(token_ids).astype(np.int32) if token_ids else np.zeros(0, np.int32))
    per_row = {k: [v[i] for i in keep] if isinstance(v, list) and len(v) == len(conversations) else v for k, v in meta.items()}
    written = {**per_row, "kept": keep, "n_input": len(conversations),
               "forward_tokens": int(sum(len(s.input_ids) for s in samples))}
    (folder / "meta.json").write_text(json.dumps(written))
    (folder / "done").write_text("")
    return written
