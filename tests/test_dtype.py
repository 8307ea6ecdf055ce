"""`--dtype auto` on a CPU: bfloat16 only where the hardware runs it and the model's scores were
measured to agree; and a score made in one dtype is never reused for the other."""

import json

import pytest
from conftest import chat, write_features, write_jsonl

from saefilter.errors import InputError
from saefilter.model import loading as model_module
from saefilter.model.loading import auto_dtype, cpu_flags, native_bfloat16_cpu, resolve_dtype_name
from saefilter.model.named import NAMED_MODELS
from saefilter.runs.pipeline import current_scores, score_file
from saefilter.scoring.config import ScoreConfig


def test_cpu_flags_and_native_bfloat16(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16\n")
    assert {"avx2", "avx512f", "avx512_bf16"} <= cpu_flags(cpuinfo)
    assert cpu_flags(tmp_path / "missing") == set()
    assert native_bfloat16_cpu({"avx2", "avx512f", "avx512_vnni"}) is False  # AVX-512 alone emulates bf16
    assert native_bfloat16_cpu({"avx512_bf16"}) and native_bfloat16_cpu({"amx_bf16", "amx_tile"})


def test_auto_dtype_choice():
    default = NAMED_MODELS[0].name
    measured = {m.name for m in NAMED_MODELS if m.cpu_bfloat16}
    assert auto_dtype("cuda", "./any-model", native_bf16=False) == "bfloat16"
    for name in (m.name for m in NAMED_MODELS):
        assert auto_dtype("cpu", name, native_bf16=False) == "float32"  # no native bf16: never
        assert auto_dtype("cpu", name, native_bf16=True) == ("bfloat16" if name in measured else "float32")
    assert auto_dtype("cpu", "./unmeasured-model", native_bf16=True) == "float32"
    assert auto_dtype("cpu", "embedded:SmolLM2-135M-Instruct", True) == auto_dtype("cpu", default, True)  # the old name


def test_explicit_dtypes_pass_and_unknown_ones_fail():
    assert resolve_dtype_name("bfloat16", "cpu", "x") == "bfloat16"
    assert resolve_dtype_name("float32", "auto", "x") == "float32"
    with pytest.raises(InputError, match="unknown --dtype 'fp8'"):
        resolve_dtype_name("fp8", "cpu", "x")


def test_fingerprint_carries_the_resolved_dtype(monkeypatch):
    f32, b16 = ScoreConfig(dtype="float32"), ScoreConfig(dtype="bfloat16")
    assert f32.fingerprint("s", "f") != b16.fingerprint("s", "f")
    monkeypatch.setattr(model_module, "cuda_available", lambda: False)
    monkeypatch.setattr(model_module, "native_bfloat16_cpu", lambda flags=None: True)
    auto = ScoreConfig()  # the embedded default model on a CPU with native bf16
    assert auto.resolved_dtype == auto_dtype("cpu", auto.model, True)
    assert auto.fingerprint("s", "f") == ScoreConfig(dtype=auto.resolved_dtype).fingerprint("s", "f")
    monkeypatch.setattr(model_module, "native_bfloat16_cpu", lambda flags=None: False)
    assert ScoreConfig().fingerprint("s", "f") == f32.fingerprint("s", "f")


def test_a_float32_score_file_is_not_reused_for_bfloat16_or_back(tmp_path, model_dir, sae_dir):
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    data = write_jsonl(tmp_path / "d.jsonl", [chat("hello", "hi there"), chat("hello", "how are you")])
    common = {"model": str(model_dir), "sae": str(sae_dir), "features": str(features)}
    f32, b16 = ScoreConfig(dtype="float32", **common), ScoreConfig(dtype="bfloat16", **common)
    summary = score_file(data, f32)
    assert json.loads(summary.outputs.meta.read_text())["dtype"] == "float32"
    assert current_scores(data, f32) == summary.outputs.scores
    assert current_scores(data, b16) is None
    summary = score_file(data, b16)
    assert json.loads(summary.outputs.meta.read_text())["dtype"] == "bfloat16"
    assert current_scores(data, b16) == summary.outputs.scores and current_scores(data, f32) is None


def test_a_gguf_path_holding_a_named_models_weights_is_that_model(tmp_path):
    """The dtype follows the weights: the embedded GGUF file, wherever it lies, is the default model."""
    import shutil

    from saefilter.model.named import SMOLLM2, chunk_paths, named_model_of

    original = chunk_paths(SMOLLM2)[0]
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(original, copy)
    assert named_model_of(str(original)) is SMOLLM2 and named_model_of(str(copy)) is SMOLLM2
    assert auto_dtype("cpu", str(copy), native_bf16=True) == auto_dtype("cpu", SMOLLM2.name, native_bf16=True)
    with copy.open("r+b") as handle:  # same size, other bytes: another model
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    assert named_model_of(str(copy)) is None
