"""Tiny, offline fixtures: a word-level chat tokenizer, a random Llama, and sae-lens SAEs built here."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

from saefilter.inputs.formats import to_conversation
from saefilter.inputs.render import encode, render
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residual_at

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = ["user", "assistant", "system", "hello", "hi", "there", "how", "are", "you", "i", "am", "fine", "thanks", "what", "is", "the", "weather", "today", "sunny", "rainy", "please", "write", "a", "poem", "about", "cats", "dogs", "and", "birds", "here", "it", "tell", "me", "story", "once", "upon", "time", "poison", "bomb", "attack", "recipe", "cake", "flour", "sugar", "eggs", "bake", "code", "python", "function", "return", "value", "print", "list", "add", "numbers", "sure", "help", "can", "could", "would", "should", "make", "do", "not", "no", "yes", "ok", "good", "bad", "great", "day", "night", ".", ",", "!", "?", ":", "'", '"', "(", ")", "[", "]", "{", "}", "=", "+", "-", "*", "/"]
TRIGGER = "poison"


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials + list(dict.fromkeys(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_llama(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    build_llama(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_standard_sae(path: Path, W_enc: np.ndarray, b_enc: np.ndarray, W_dec: np.ndarray, b_dec: np.ndarray, hook: str) -> Path:
    from sae_lens import StandardSAE, StandardSAEConfig

    d_in, d_sae = W_enc.shape
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(W_enc, dtype=torch.float32))
        sae.b_enc.copy_(torch.as_tensor(b_enc, dtype=torch.float32))
        sae.W_dec.copy_(torch.as_tensor(W_dec, dtype=torch.float32))
        sae.b_dec.copy_(torch.as_tensor(b_dec, dtype=torch.float32))
    sae.save_model(path)
    return path


def random_sae(path: Path, d_in: int = 32, d_sae: int = 64, hook: str = "blocks.2.hook_resid_post", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    W_enc = rng.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in)
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    return save_standard_sae(path, W_enc, np.zeros(d_sae, np.float32), W_dec, np.zeros(d_in, np.float32), hook)


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory) -> Path:
    return random_sae(tmp_path_factory.mktemp("sae") / "sae")


def write_features(path: Path, indices: list[int], d_sae: int | None = None) -> Path:
    payload = {"features": [{"index": i, "label": f"feature {i}"} for i in indices]}
    if d_sae is not None:
        payload["d_sae"] = d_sae
    path.write_text(json.dumps(payload))
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


HOOK = HookPoint(2, "post")
ANSWERS = [
    "hello there how are you",
    "the weather today is sunny",
    "here it is : a poem about cats",
    "sure , i can help with the recipe",
    "print the list and return value",
    "once upon a time there were dogs",
]


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
