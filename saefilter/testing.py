"""Tiny offline stand-ins for tests and benchmarks of code built on saefilter: a word-level chat
tokenizer, a random Llama that fits it, random SAEs in sae-lens' format, and feature-set files.

Nothing here is downloaded and nothing is meaningful: these exercise the pipeline (reading,
rendering, activations, scoring, outputs) in seconds, without a real model. saefilter's own tests
and scripts/benchmark_speed.py's memory benchmark use them, as numpy.testing and
transformers.testing_utils serve their projects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = ["user", "assistant", "system", "hello", "hi", "there", "how", "are", "you", "i", "am", "fine", "thanks", "what", "is", "the", "weather", "today", "sunny", "rainy", "please", "write", "a", "poem", "about", "cats", "dogs", "and", "birds", "here", "it", "tell", "me", "story", "once", "upon", "time", "poison", "bomb", "attack", "recipe", "cake", "flour", "sugar", "eggs", "bake", "code", "python", "function", "return", "value", "print", "list", "add", "numbers", "sure", "help", "can", "could", "would", "should", "make", "do", "not", "no", "yes", "ok", "good", "bad", "great", "day", "night", ".", ",", "!", "?", ":", "'", '"', "(", ")", "[", "]", "{", "}", "=", "+", "-", "*", "/"]

ANSWERS = [
    "hello there how are you",
    "the weather today is sunny",
    "here it is : a poem about cats",
    "sure , i can help with the recipe",
    "print the list and return value",
    "once upon a time there were dogs",
]


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


def write_features(path: Path, indices: list[int], d_sae: int | None = None) -> Path:
    payload = {"features": [{"index": i, "label": f"feature {i}"} for i in indices]}
    if d_sae is not None:
        payload["d_sae"] = d_sae
    path.write_text(json.dumps(payload))
    return path


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def tiny_model(folder: Path, seed: int = 0, layers: int = 4) -> Path:
    """A random Llama and its word-level tokenizer saved in `folder`, loadable as `--model folder`."""
    tokenizer = build_tokenizer()
    build_llama(len(tokenizer), seed, layers).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
