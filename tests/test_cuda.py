"""The CUDA paths: device and dtype choice, the truncated forward pass and the drift log-probs on a
GPU against the CPU. Skipped where no CUDA device is present (CI); scripts/device_check.sh runs them
on a GPU machine. They need torch and transformers only (no sae-lens, no FAISS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import HOOK, chat

from saefilter.drift.logprobs import encode_last_answer, mean_answer_logprobs
from saefilter.inputs.formats import to_conversation
from saefilter.inputs.render import encode, render
from saefilter.model.activations import length_batches, pad_batch
from saefilter.model.layers import residual_at
from saefilter.model.loading import DEFAULT_MODEL, load_model, resolve_device, resolve_dtype_name

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

RECORDS = [chat("hello how are you", "i am fine thanks"), chat("write a poem about cats", "cats and dogs and birds ."),
           chat("tell me a story", "once upon a time there were dogs . the end"), chat("hi", "hi there")]


def test_auto_means_cuda_and_bfloat16():
    assert resolve_device("auto") == "cuda"
    assert resolve_dtype_name("auto", "auto", DEFAULT_MODEL) == "bfloat16"
    assert resolve_dtype_name("auto", "cuda", "./any-model") == "bfloat16"


def residuals(model_dir, tokenizer, device: str, dtype: str) -> list[torch.Tensor]:
    lm = load_model(str(model_dir), device=device, dtype=dtype)
    samples = [encode(render(to_conversation(r), tokenizer), tokenizer, 256) for r in RECORDS]
    out: list[torch.Tensor] = [torch.empty(0)] * len(samples)
    for batch in length_batches([len(s.input_ids) for s in samples], 16, 8192):
        ids, mask, scored = pad_batch([samples[i] for i in batch], tokenizer.pad_token_id)
        resid = residual_at(lm.model, HOOK, ids.to(device), mask.to(device)).float().cpu()
        for row, i in enumerate(batch):
            out[i] = resid[row][scored[row]]
    return out


def test_truncated_forward_on_cuda_matches_cpu_in_float32(model_dir, tokenizer):
    cpu = residuals(model_dir, tokenizer, "cpu", "float32")
    gpu = residuals(model_dir, tokenizer, "cuda", "float32")
    for c, g in zip(cpu, gpu, strict=True):
        assert c.shape == g.shape
        assert torch.allclose(c, g, rtol=1e-4, atol=1e-4 * float(c.abs().max()))


def test_bfloat16_on_cuda_stays_close_to_float32(model_dir, tokenizer):
    f32 = torch.cat(residuals(model_dir, tokenizer, "cuda", "float32"))
    b16 = torch.cat(residuals(model_dir, tokenizer, "cuda", "bfloat16"))
    assert float((f32 - b16).abs().max()) <= 0.05 * float(f32.abs().max())


def test_drift_logprobs_on_cuda_match_cpu(model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    samples = [encode_last_answer(to_conversation(r), tokenizer, 256) for r in RECORDS]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    cpu = mean_answer_logprobs(model, samples)
    gpu = mean_answer_logprobs(model.to("cuda"), samples)
    assert np.all(cpu < 0)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4)
