"""model.native computes the residual stream transformers computes, bit for bit, and hands every
model it does not cover back to transformers."""

import json

import pytest
import torch
from conftest import EMBEDDED, QWEN

from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residuals_at
from saefilter.model.loading import load_model, model_path
from saefilter.model.native import NativeDecoder, load_native, unsupported

HOOKS = [HookPoint(0, "pre"), HookPoint(1, "post"), HookPoint(3, "post")]


def tiny(kind: str, path, kv_heads: int = 2, **extra):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[kind]
    torch.manual_seed(1)
    config = config_class(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128,
                          tie_word_embeddings=False, **extra)
    model = model_class(config).eval()
    if kind == "qwen2":  # random biases, so a bias dropped or misplaced shows
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_()
    model.save_pretrained(path)
    return json.loads((path / "config.json").read_text())


def batches():
    """Unpadded, right-padded, one-token and single rows: each takes another sdpa path."""
    generator = torch.Generator().manual_seed(0)
    for lengths in ([17], [30, 12, 3], [1], [9, 9], [6, 1]):
        ids = torch.randint(0, 97, (len(lengths), max(lengths)), generator=generator)
        attention = torch.zeros_like(ids)
        for row, n in enumerate(lengths):
            attention[row, :n] = 1
        yield ids, attention


@pytest.mark.parametrize("kind,kv_heads", [("llama", 2), ("llama", 4), ("qwen2", 2)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_residuals_are_bit_identical_to_transformers(tmp_path, kind, kv_heads, dtype):
    config = tiny(kind, tmp_path, kv_heads)
    assert unsupported(config) is None
    native = load_model(str(tmp_path), "cpu", dtype, residuals_only=True, tokenizer=object()).model
    reference = load_model(str(tmp_path), "cpu", dtype, tokenizer=object()).model
    assert isinstance(native, NativeDecoder) and not isinstance(reference, NativeDecoder)
    for ids, attention in batches():
        ours, theirs = residuals_at(native, HOOKS, ids, attention), residuals_at(reference, HOOKS, ids, attention)
        for hook in HOOKS:
            assert ours[hook.name].dtype == getattr(torch, dtype)
            assert torch.equal(ours[hook.name], theirs[hook.name]), (kind, dtype, hook.name, ids.shape)


@EMBEDDED
def test_the_embedded_default_reads_the_same_residuals_natively():
    from saefilter.model.loading import DEFAULT_MODEL

    native = load_model(DEFAULT_MODEL, "cpu", "float32", residuals_only=True, tokenizer=object()).model
    reference = load_model(DEFAULT_MODEL, "cpu", "float32", tokenizer=object()).model
    assert isinstance(native, NativeDecoder)
    hooks = [HookPoint(15, "post"), HookPoint(29, "post")]
    for ids, attention in batches():
        ours, theirs = residuals_at(native, hooks, ids, attention), residuals_at(reference, hooks, ids, attention)
        assert all(torch.equal(ours[h.name], theirs[h.name]) for h in hooks)


@QWEN
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_qwen_model_reads_the_same_residuals_natively(dtype):
    """The shipped second model (Qwen2.5-Coder-1.5B, biased q/k/v, 28 layers) in both dtypes `auto`
    picks, at its feature set's layer and the last; one model in memory at a time (6 GB in float32)."""
    hooks = [HookPoint(15, "post"), HookPoint(27, "post")]
    results = []
    for residuals_only in (True, False):
        model = load_model("qwen2.5-coder-1.5b-instruct", "cpu", dtype, residuals_only=residuals_only,
                           tokenizer=object()).model
        assert isinstance(model, NativeDecoder) == residuals_only
        results.append([residuals_at(model, hooks, ids, attention) for ids, attention in batches()])
        del model
    for ours, theirs in zip(*results, strict=True):
        assert all(torch.equal(ours[h.name], theirs[h.name]) for h in hooks)


@pytest.mark.parametrize("change,reason", [
    ({"model_type": "gemma3"}, "model type"),
    ({"hidden_act": "gelu"}, "activation"),
    ({"rope_parameters": {"rope_theta": 1e4, "rope_type": "llama3", "factor": 8.0}}, "scaled rope"),
    ({"use_sliding_window": True}, "sliding-window"),
    ({"layer_types": ["full_attention", "sliding_attention"] * 2}, "sliding-window"),
])
def test_configs_it_does_not_cover_go_to_transformers(tmp_path, change, reason):
    config = tiny("llama", tmp_path)
    assert reason in unsupported({**config, **change})
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    if change.get("model_type") == "gemma3" or "rope_parameters" in change:
        return  # transformers would read another architecture or rope here; the refusal is the point
    assert not isinstance(load_model(str(tmp_path), "cpu", "float32", residuals_only=True, tokenizer=object()).model,
                          NativeDecoder)


def test_weights_under_other_names_load_through_transformers(tmp_path):
    """A checkpoint whose names native does not know is not an error: transformers reads it."""
    from safetensors.torch import load_file, save_file

    config = tiny("llama", tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k.replace("model.", "", 1): v for k, v in weights.items()}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ValueError, match="the weights have no embed_tokens.weight"):
        load_native(tmp_path, config, torch.float32)
    model = load_model(str(tmp_path), "cpu", "float32", residuals_only=True, tokenizer=object()).model
    assert not isinstance(model, NativeDecoder)


def test_a_model_read_for_more_than_residuals_is_the_transformers_class(model_dir):
    assert not isinstance(load_model(str(model_dir), "cpu", "float32", tokenizer=object()).model, NativeDecoder)
    assert model_path(str(model_dir)) == str(model_dir)


def test_a_model_loaded_through_a_layer_reads_it_the_same_and_nothing_after_it(tmp_path):
    tiny("llama", tmp_path)
    full = load_model(str(tmp_path), "cpu", "float32", residuals_only=True, tokenizer=object()).model
    through = load_model(str(tmp_path), "cpu", "float32", residuals_only=True, tokenizer=object(), through_layer=1).model
    assert len(through.layers) == len(full.layers) == 4  # depth checks see the whole model
    assert sum(p.numel() for p in through.parameters()) < sum(p.numel() for p in full.parameters())
    hooks = [HookPoint(0, "pre"), HookPoint(1, "post")]
    for ids, attention in batches():
        ours, theirs = residuals_at(through, hooks, ids, attention), residuals_at(full, hooks, ids, attention)
        assert all(torch.equal(ours[h.name], theirs[h.name]) for h in hooks)
    with pytest.raises(RuntimeError, match="decoder layer 2 was not loaded"):
        residuals_at(through, [HookPoint(3, "post")], *next(batches()))
