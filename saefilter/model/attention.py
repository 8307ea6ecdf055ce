"""A bfloat16 attention for CPUs, faster than torch's flash kernel at the lengths samples have.

In bfloat16 on a CPU, torch's flash-attention kernel is no faster than in float32 and is a quarter
of the default's forward pass (BENCHMARKS.md, "Speed"). Here each chunk of queries meets only the
keys up to its end (causal: no work above the diagonal), in plain bfloat16 matrix products with the
softmax in between: 1.6-2x the kernel's speed at 128-600 tokens (scripts/benchmark_attention.py).
Scores round to bfloat16 before the softmax, so it is used only for the models whose agreement with
float32 was measured with it (`named.NamedModel.cpu_chunked_attention`).

It takes the same 4D mask as SDPA (registered beside it), so padding and sliding windows hold.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "saefilter_chunked"
QUERY_CHUNK = 32  # fastest of 32, 64 and 128 at 128-600 tokens (scripts/benchmark_attention.py)


def chunked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scaling: float,
    chunk: int = QUERY_CHUNK,
) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) v for q [B, H, L, D] and k, v [B, KV, S, D] (H a multiple of KV),
    causal when `mask` is None; `mask` is boolean (True: attend) or additive, [B or 1, 1, L, S].
    Returns [B, H, L, D]."""
    batch, heads, length, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    offset = keys - length  # queries are the last `length` positions
    grouped = query.reshape(batch, kv_heads, group, length, dim)
    out = torch.empty_like(query)
    for start in range(0, length, chunk):
        end = min(length, start + chunk)
        rows, visible = end - start, end + offset
        queries = grouped[:, :, :, start:end].reshape(batch, kv_heads, group * rows, dim)
        scores = torch.matmul(queries, key[:, :, :visible].transpose(-1, -2)).mul_(scaling)
        scores = scores.view(batch, kv_heads, group, rows, visible)
        if mask is None:
            causal = torch.ones(rows, visible, dtype=torch.bool, device=query.device).tril(start + offset)
            scores.masked_fill_(~causal, float("-inf"))
        else:
            part = mask[:, :, start:end, :visible].unsqueeze(2)  # [B, 1, 1, rows, visible]
            scores = scores.masked_fill(~part, float("-inf")) if part.dtype == torch.bool else scores + part
        weights = torch.softmax(scores, dim=-1).view(batch, kv_heads, group * rows, visible)
        out[:, :, start:end] = torch.matmul(weights, value[:, :, :visible]).view(
            batch, kv_heads, group, rows, dim).reshape(batch, heads, rows, dim)
    return out


def attention_forward(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; SDPA wherever this kernel is not the faster one
    (float32, CUDA) or cannot apply (soft-capped or position-biased logits)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (query.device.type != "cpu" or query.dtype == torch.float32 or kwargs.get("softcap") is not None
            or kwargs.get("position_bias") is not None or dropout):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = chunked_attention(query, key, value, attention_mask, scale)
    return out.transpose(1, 2).contiguous(), None


def use_chunked_attention(model: torch.nn.Module) -> None:
    """Switch a loaded transformers model to this attention (its masks built as for SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
