"""The shipped SAEs' architecture, loaded without sae-lens: importing sae-lens (and through it
transformer-lens) costs seconds at every start, and the pre-commit hook starts on every commit.

A TopK SAE folder as sae-lens saves it (`cfg.json` + `sae_weights.safetensors`, architecture
"topk", no activation normalisation, no reshaping) is read here into a small module whose `encode`
runs the same operations in the same order as sae-lens's `TopKSAE.encode` (tests compare them
bit for bit). Every other SAE, and every SAE of the sae-lens registry, still loads through sae-lens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

SUPPORTED = {"architecture": "topk", "normalize_activations": "none", "reshape_activations": "none"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class NativeConfig:
    """The part of a sae-lens config this loader reads; `metadata.hook_name` as sae-lens has it."""

    d_in: int
    d_sae: int
    k: int
    rescale_acts_by_decoder_norm: bool
    apply_b_dec_to_input: bool
    dtype: str
    metadata: Any = field(default=None)


def native_config(cfg: dict[str, Any]) -> NativeConfig | None:
    """The config when this loader reproduces the SAE exactly, else None (sae-lens loads it)."""
    if any(cfg.get(key, "none") != value for key, value in SUPPORTED.items()) or cfg.get("dtype", "float32") not in _DTYPES:
        return None
    if cfg.get("metadata", {}).get("training_architecture_details", {}).get("use_sparse_activations"):
        return None
    metadata = SimpleNamespace(**cfg.get("metadata", {}))
    return NativeConfig(int(cfg["d_in"]), int(cfg["d_sae"]), int(cfg["k"]), bool(cfg.get("rescale_acts_by_decoder_norm")),
                        bool(cfg.get("apply_b_dec_to_input", True)), cfg.get("dtype", "float32"), metadata)


class TopKSAE(nn.Module):
    """Inference only: residuals [n, d_in] -> feature activations [n, d_sae], k non-zero per row."""

    def __init__(self, cfg: NativeConfig, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.cfg = cfg
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            if name not in weights:
                raise KeyError(name)
            setattr(self, name, nn.Parameter(weights[name], requires_grad=False))

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = x.to(self.dtype) - self.b_dec * self.cfg.apply_b_dec_to_input
        hidden_pre = sae_in @ self.W_enc + self.b_enc
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.W_dec.norm(dim=-1)
        values, indices = torch.topk(hidden_pre, k=self.cfg.k, dim=-1, sorted=False)
        result = torch.zeros_like(hidden_pre)
        result.scatter_(-1, indices, values.relu())
        return result


def load_native(folder: Path, device: str = "cpu") -> TopKSAE | None:
    """The SAE of a sae-lens folder when its architecture is one this module reproduces, else None."""
    cfg = native_config(json.loads((folder / "cfg.json").read_text(encoding="utf-8")))
    if cfg is None:
        return None
    from safetensors import safe_open

    dtype = _DTYPES[cfg.dtype]
    with safe_open(folder / "sae_weights.safetensors", framework="pt", device=device) as handle:
        weights = {key: handle.get_tensor(key).to(dtype=dtype) for key in handle.keys()}  # noqa: SIM118
    if set(weights) - {"W_enc", "b_enc", "W_dec", "b_dec"}:
        return None  # a scaling factor or another extra: sae-lens knows what it means
    return TopKSAE(cfg, weights).eval()
