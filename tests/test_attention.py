"""The chunked bfloat16 attention (`model.attention`): the same attention as SDPA (exact in float32,
with masks, grouped heads and cached keys), where it is used, and that scores are keyed by it."""

import pytest
import torch
import torch.nn.functional as F
from conftest import build_llama

from saefilter.model.attention import NAME, chunked_attention, use_chunked_attention
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residual_at
from saefilter.model.loading import resolve_attention_name
from saefilter.model.named import NAMED_MODELS
from saefilter.runs.settings import ScoreConfig


def qkv(batch=3, heads=6, kv_heads=2, length=45, keys=45, dim=8):
    torch.manual_seed(0)
    return (torch.randn(batch, heads, length, dim), torch.randn(batch, kv_heads, keys, dim),
            torch.randn(batch, kv_heads, keys, dim))


def reference(q, k, v, mask=None):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    if mask is None:
        offset = k.shape[2] - q.shape[2]
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(offset)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("chunk", [1, 7, 32, 64])
def test_causal_grouped_attention_equals_sdpa_in_float32(chunk):
    q, k, v = qkv()
    torch.testing.assert_close(chunked_attention(q, k, v, None, q.shape[-1] ** -0.5, chunk), reference(q, k, v),
                               rtol=1e-5, atol=1e-5)


def test_queries_after_cached_keys_see_every_earlier_key():
    q, k, v = qkv(length=5, keys=20)
    torch.testing.assert_close(chunked_attention(q, k, v, None, q.shape[-1] ** -0.5, 2), reference(q, k, v),
                               rtol=1e-5, atol=1e-5)


def test_boolean_and_additive_masks_hold_right_padding():
    q, k, v = qkv()
    lengths = torch.tensor([45, 30, 12])
    keep = torch.arange(45)[None, :] < lengths[:, None]  # right padding
    mask = (torch.ones(45, 45, dtype=torch.bool).tril()[None] & keep[:, None, :])[:, None]  # [B, 1, L, S]
    expected = reference(q, k, v, mask)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    for given in (mask, additive):
        got = chunked_attention(q, k, v, given, q.shape[-1] ** -0.5, 16)
        for row, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(got[row, :, :n], expected[row, :, :n], rtol=1e-5, atol=1e-5)


def test_it_runs_only_for_measured_models_in_reduced_precision_on_a_cpu():
    measured = {m.name for m in NAMED_MODELS if m.cpu_chunked_attention}
    assert measured == {NAMED_MODELS[0].name}  # the default; Qwen's agreement was measured with SDPA
    for model in NAMED_MODELS:
        assert resolve_attention_name("bfloat16", "cpu", model.name) == ("chunked" if model.name in measured else "sdpa")
        assert resolve_attention_name("float32", "cpu", model.name) == "sdpa"
        assert resolve_attention_name("bfloat16", "cuda", model.name) == "sdpa"
    assert resolve_attention_name("bfloat16", "cpu", "./a-local-model") == "sdpa"


def test_scores_are_keyed_by_the_attention_kernel(monkeypatch):
    from saefilter.model import loading

    config = ScoreConfig(dtype="bfloat16", device="cpu")
    chunked = config.fingerprint("sae", "features")
    monkeypatch.setattr(loading, "resolve_attention_name", lambda *_: "sdpa")
    assert config.resolved_attention == "sdpa" and config.fingerprint("sae", "features") != chunked


def test_a_model_on_it_gives_sdpa_residuals_within_bfloat16_rounding():
    """In a real model (a tiny random Llama, right-padded batch): float32 runs SDPA either way;
    in bfloat16 the kernel's residuals stay within bfloat16 rounding of SDPA's."""
    ids = torch.tensor([[5, 9, 13, 2, 7, 7, 3, 8], [4, 8, 15, 16, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]])
    model = build_llama(60).to(torch.bfloat16)
    hook = HookPoint(2, "post")
    sdpa = residual_at(model, hook, ids, mask)[mask.bool()].float()
    use_chunked_attention(model)
    assert model.config._attn_implementation == NAME
    chunked = residual_at(model, hook, ids, mask)[mask.bool()].float()
    assert torch.isfinite(chunked).all()
    torch.testing.assert_close(chunked, sdpa, rtol=0.03, atol=0.03 * float(sdpa.abs().max()))
