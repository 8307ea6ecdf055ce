"""The residual stream of a Llama- or Qwen2-shaped decoder in plain torch, without transformers.

Why: scoring needs only the residual stream at the SAE's layer, and importing transformers' model
code takes seconds at every start (the pre-commit hook starts on every commit). This module
computes what transformers' own classes compute on their default (sdpa) path, the same operations
in the same order, so the residuals agree bit for bit (tests compare them on tiny random models of
both types and on the embedded default). It has no LM head, cache or generation: drift, the judge
and training load the transformers class. A config it does not cover (rope scaling, sliding
windows, other activations, other model types) loads through transformers as before; `unsupported`
says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# model type -> (bias on q/k/v, bias on o), the one way the two families differ on this path; None:
# as the config's `attention_bias` says (Llama)
FAMILIES = {"llama": None, "qwen2": (True, False)}


class UnknownLayout(ValueError):
    """The checkpoint names its weights otherwise than transformers' Llama/Qwen2 classes save them."""


@dataclass(frozen=True)
class NativeConfig:
    """The fields of a config.json this module reads; `hidden_size` and `num_hidden_layers` under the
    names transformers uses, so code that checks a model's width and depth reads both kinds alike."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool


def _rope_theta(config: dict[str, Any]) -> float | None:
    """The rope base where the rope is the plain (unscaled) one, else None."""
    parameters = config.get("rope_parameters")
    if parameters is not None:
        if set(parameters) - {"rope_theta", "rope_type"} or parameters.get("rope_type", "default") != "default":
            return None
        return float(parameters["rope_theta"])
    if config.get("rope_scaling") is not None or "rope_theta" not in config:
        return None
    return float(config["rope_theta"])


def unsupported(config: dict[str, Any]) -> str | None:
    """Why this module cannot run the model `config` describes, or None where it can."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        return f"model type {model_type!r}"
    if config.get("hidden_act") != "silu":
        return f"activation {config.get('hidden_act')!r}"
    if _rope_theta(config) is None:
        return "scaled rope"
    if config.get("partial_rotary_factor", 1.0) != 1.0:
        return "partial rope"
    layer_types = config.get("layer_types") or []
    if config.get("use_sliding_window") or any(kind != "full_attention" for kind in layer_types):
        return "sliding-window attention"
    if config.get("pretraining_tp", 1) != 1:
        return "tensor-parallel pretraining layout"
    return None


def native_config(config: dict[str, Any]) -> NativeConfig:
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    biases = FAMILIES[config["model_type"]]
    attention_bias = bool(config.get("attention_bias", False))
    qkv_bias, o_bias = biases if biases is not None else (attention_bias, attention_bias)
    return NativeConfig(
        model_type=config["model_type"], hidden_size=hidden, num_hidden_layers=int(config["num_hidden_layers"]),
        num_attention_heads=heads, num_key_value_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads), intermediate_size=int(config["intermediate_size"]),
        rms_norm_eps=float(config["rms_norm_eps"]), rope_theta=float(_rope_theta(config)),  # type: ignore[arg-type]
        qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=bool(config.get("mlp_bias", False)),
    )


class Linear(nn.Module):
    """nn.Linear's forward on loaded weights (no random initialisation to pay for and throw away)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.eps)
        return self.weight * hidden.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, heads, length, dim = states.shape
    return states[:, :, None].expand(batch, heads, n_rep, length, dim).reshape(batch, heads * n_rep, length, dim)


Weights = dict[str, torch.Tensor]


def linear(weights: Weights, name: str, bias: bool) -> Linear:
    return Linear(weights[f"{name}.weight"], weights[f"{name}.bias"] if bias else None)


class Attention(nn.Module):
    def __init__(self, config: NativeConfig, weights: Weights, prefix: str) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.head_dim**-0.5
        self.q_proj = linear(weights, f"{prefix}q_proj", config.qkv_bias)
        self.k_proj = linear(weights, f"{prefix}k_proj", config.qkv_bias)
        self.v_proj = linear(weights, f"{prefix}v_proj", config.qkv_bias)
        self.o_proj = linear(weights, f"{prefix}o_proj", config.o_bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape[:-1]
        split = (*shape, -1, self.head_dim)
        query = self.q_proj(hidden).view(split).transpose(1, 2)
        key = self.k_proj(hidden).view(split).transpose(1, 2)
        value = self.v_proj(hidden).view(split).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        query = (query * cos) + (rotate_half(query) * sin)
        key = (key * cos) + (rotate_half(key) * sin)
        extra = {}
        if self.groups > 1:  # grouped-query attention, handed to sdpa as transformers hands it
            if mask is None and key.shape[-1] <= 256:
                extra["enable_gqa"] = True
            else:
                key, value = repeat_kv(key, self.groups), repeat_kv(value, self.groups)
        length = query.shape[2]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, scale=self.scaling,
                                             is_causal=length > 1 and mask is None, **extra)
        out = out.reshape(out.shape[0], -1, length, value.shape[-1]).transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(*shape, -1).contiguous())


class MLP(nn.Module):
    def __init__(self, config: NativeConfig, weights: Weights, prefix: str) -> None:
        super().__init__()
        self.gate_proj = linear(weights, f"{prefix}gate_proj", config.mlp_bias)
        self.up_proj = linear(weights, f"{prefix}up_proj", config.mlp_bias)
        self.down_proj = linear(weights, f"{prefix}down_proj", config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: NativeConfig, weights: Weights, prefix: str) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(weights[f"{prefix}input_layernorm.weight"], config.rms_norm_eps)
        self.self_attn = Attention(config, weights, f"{prefix}self_attn.")
        self.post_attention_layernorm = RMSNorm(weights[f"{prefix}post_attention_layernorm.weight"], config.rms_norm_eps)
        self.mlp = MLP(config, weights, f"{prefix}mlp.")

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), mask, cos, sin)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class NotLoaded(nn.Module):
    """A layer past the last one a run reads: never loaded, and an error if reached."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, *_: Any) -> torch.Tensor:
        raise RuntimeError(f"decoder layer {self.index} was not loaded (the model was loaded through an earlier layer)")


class NativeDecoder(nn.Module):
    """Embeddings and decoder layers; `forward` returns the last layer's output (no final norm).
    Callers read earlier layers with forward hooks on `layers`, as they do on transformers' models,
    and stop the pass there (`model.layers.residuals_at`)."""

    def __init__(self, config: NativeConfig, weights: Weights, through_layer: int | None = None) -> None:
        """`weights` as transformers names them, "model." dropped; layers after `through_layer` are
        left out (a run that reads layer L never computes the ones after it)."""
        super().__init__()
        self.config = config
        last = config.num_hidden_layers - 1 if through_layer is None else through_layer
        self.embed_tokens = nn.Parameter(weights["embed_tokens.weight"], requires_grad=False)
        self.layers = nn.ModuleList(DecoderLayer(config, weights, f"layers.{i}.") if i <= last else NotLoaded(i)
                                    for i in range(config.num_hidden_layers))
        dim = config.head_dim
        self.register_buffer("inv_freq", 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)),
                             persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        hidden = F.embedding(input_ids, self.embed_tokens)
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
        freqs = positions[..., None].float() * self.inv_freq.to(device=input_ids.device, dtype=torch.float)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(hidden.dtype), angles.sin().to(hidden.dtype)
        mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            index = torch.arange(length, device=input_ids.device)
            causal = index[None, None, None, :] <= index[None, None, :, None]
            mask = causal & attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            hidden = layer(hidden, mask, cos, sin)
        return hidden


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / shard for shard in shards]
    return [folder / "model.safetensors"]


def needed(name: str, through_layer: int | None) -> bool:
    """Whether a weight (named as transformers names it, "model." dropped) is read by a run that
    stops after `through_layer`: the embeddings and the layers up to it, never the final norm."""
    if name.startswith("layers."):
        return through_layer is None or int(name.split(".")[1]) <= through_layer
    return name == "embed_tokens.weight"


def load_native(folder: Path, config: dict[str, Any], dtype: torch.dtype, through_layer: int | None = None) -> NativeDecoder:
    """The decoder of the safetensors checkpoint in `folder`, weights cast to `dtype` as
    transformers casts them; the LM head, the final norm and the layers after `through_layer`
    (where given) are never read."""
    from safetensors import safe_open

    weights: Weights = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if name.startswith("model.") and needed(name.removeprefix("model."), through_layer):
                    weights[name.removeprefix("model.")] = handle.get_tensor(name).to(dtype)
    try:
        return NativeDecoder(native_config(config), weights, through_layer).eval()
    except KeyError as err:
        raise UnknownLayout(f"{folder}: the weights have no {err.args[0]}") from None
