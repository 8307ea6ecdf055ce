#!/usr/bin/env python
"""Is there a faster bfloat16 attention on this CPU than torch's flash kernel, at scoring lengths?

In bfloat16 the CPU flash-attention kernel (`scaled_dot_product_attention`) is a quarter of the
default's forward and no faster than in float32 (BENCHMARKS.md, "Speed"). This times it against a
query-chunked attention written with bfloat16 matrix products (each chunk of queries against the
keys up to its end, softmax in between), at the default's attention shape (9 query heads sharing 3
key/value heads, head size 64, batch 16, causal), and measures each one's largest error against
float32 attention on the inputs before their rounding to bfloat16 (random, unit variance).

    python scripts/benchmark_attention.py [--lengths 128,300,600] [-o results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from common import time_it

BATCH, HEADS, KV_HEADS, HEAD_DIM = 16, 9, 3, 64


def median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    return time_it(fn, repeats)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """Causal attention, grouped-query: q [B, H, L, D], k and v [B, KV, L, D]."""
    batch, heads, length, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    grouped = q.view(batch, kv_heads, group, length, dim)
    out = torch.empty_like(q)
    for start in range(0, length, chunk):
        end = min(length, start + chunk)
        rows = end - start
        queries = grouped[:, :, :, start:end].reshape(batch, kv_heads, group * rows, dim)
        scores = torch.matmul(queries, k[:, :, :end].transpose(-1, -2)).mul_(dim**-0.5)
        scores = scores.view(batch, kv_heads, group, rows, end)
        scores.masked_fill_(~torch.ones(rows, end, dtype=torch.bool).tril(start), float("-inf"))
        weights = torch.softmax(scores, dim=-1).view(batch, kv_heads, group * rows, end)
        out[:, :, start:end] = torch.matmul(weights, v[:, :, :end]).view(batch, kv_heads, group, rows, dim).reshape(
            batch, heads, rows, dim)
    return out


def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


@torch.inference_mode()
def measure(length: int, chunks: list[int]) -> dict:
    torch.manual_seed(0)
    q = torch.randn(BATCH, HEADS, length, HEAD_DIM)
    k, v = (torch.randn(BATCH, KV_HEADS, length, HEAD_DIM) for _ in range(2))
    reference = flash(q, k, v)
    qb, kb, vb = (x.bfloat16() for x in (q, k, v))
    row = {"length": length, "flash_float32_ms": 1e3 * median_seconds(lambda: flash(q, k, v)),
           "flash_bfloat16_ms": 1e3 * median_seconds(lambda: flash(qb, kb, vb)),
           "flash_bfloat16_max_error": float((flash(qb, kb, vb).float() - reference).abs().max())}
    for chunk in chunks:
        row[f"chunked_{chunk}_bfloat16_ms"] = 1e3 * median_seconds(lambda c=chunk: chunked_attention(qb, kb, vb, c))
        row[f"chunked_{chunk}_bfloat16_max_error"] = float(
            (chunked_attention(qb, kb, vb, chunk).float() - reference).abs().max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="128,300,600")
    parser.add_argument("--chunks", default="32,128")
    parser.add_argument("--output", "-o", type=Path, default=None)
    args = parser.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    rows = [measure(int(length), chunks) for length in args.lengths.split(",")]
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    if args.output:
        args.output.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
