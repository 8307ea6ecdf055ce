"""The scoring tokenizer renders, tokenises and decodes exactly as transformers' tokenizer it was kept
from, and a kept snapshot lets scoring start without importing transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EMBEDDED, QWEN

from saefilter.inputs.formats import FormatError, to_conversation
from saefilter.inputs.records import Record, read_lines
from saefilter.inputs.reference import BUILTIN_CONTRASTS_DIR
from saefilter.inputs.render import encode, render
from saefilter.model import tokenizer as scoring
from saefilter.model.loading import DEFAULT_MODEL, load_scoring_tokenizer, load_tokenizer
from saefilter.model.named import cache_dir

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def prepared(path: Path, tokenizer, tokens: str) -> list[object]:
    """Every record of `path` as scoring sees it (text, ids, scored marks, offsets, answer ranges) or
    the reason it cannot be scored."""
    out: list[object] = []
    for item in read_lines(path):
        if not isinstance(item, Record):
            continue
        try:
            sample = encode(render(to_conversation(item.data, None), tokenizer, tokens), tokenizer, 512)
        except FormatError as err:
            out.append(str(err))
            continue
        out.append((sample.text, sample.input_ids, sample.scored, sample.offsets, sample.answers, sample.truncated))
    return out


def record_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.jsonl")) + sorted(BUILTIN_CONTRASTS_DIR.glob("*.jsonl"))


def assert_same_as_transformers(reference, candidate) -> int:
    compared = 0
    for path in record_files():
        for tokens in ("response", "all"):
            want = prepared(path, reference, tokens)
            assert prepared(path, candidate, tokens) == want, (path.name, tokens)
            compared += len(want)
    return compared


def test_the_snapshot_prepares_every_sample_and_contrast_as_transformers_does(tokenizer):
    snapshot = scoring.verified_snapshot(tokenizer)
    assert isinstance(snapshot, scoring.TokenizerSnapshot), snapshot
    candidate = scoring.ScoringTokenizer(scoring.TokenizerSnapshot.from_json(json.loads(json.dumps(snapshot.to_json()))))
    assert assert_same_as_transformers(tokenizer, candidate) > 500
    assert candidate.pad_token_id == tokenizer.pad_token_id and candidate.eos_token == tokenizer.eos_token


def test_a_template_the_snapshot_cannot_render_stays_with_transformers(tokenizer):
    """transformers defines a `generation` tag for assistant masks; jinja2 alone does not know it."""
    tagged = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}" \
             "{% else %}{{ m.content }}{% endif %}{% endfor %}"
    original = tokenizer.chat_template
    tokenizer.chat_template = tagged
    try:
        verdict = scoring.verified_snapshot(tokenizer)
    finally:
        tokenizer.chat_template = original
    assert isinstance(verdict, str) and "does not load" in verdict


def test_a_tokenizer_without_a_pad_token_stays_with_transformers(tokenizer):
    original = tokenizer.pad_token
    tokenizer.pad_token = None
    try:
        assert scoring.verified_snapshot(tokenizer) == "not a fast tokenizer with one chat template and a pad token"
    finally:
        tokenizer.pad_token = original


def test_a_decoder_that_differs_is_caught(tokenizer):
    snapshot = scoring.snapshot_of(tokenizer)
    candidate = scoring.ScoringTokenizer(snapshot)
    candidate.decode = lambda ids, skip_special_tokens=False: "x"  # type: ignore[method-assign]
    assert scoring.disagreement(tokenizer, candidate) == "decoding a probe text"
    template = snapshot.chat_template.replace("<|im_start|>", "<|im_start|> ")
    shifted = scoring.ScoringTokenizer(scoring.TokenizerSnapshot(**{**snapshot.__dict__, "chat_template": template}))
    assert scoring.disagreement(tokenizer, shifted).startswith("chat template on a 1-turn chat")


def test_a_kept_snapshot_is_used_and_an_edited_folder_decides_again(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAEFILTER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    for path in model_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    first = load_scoring_tokenizer(str(folder))
    assert not isinstance(first, scoring.ScoringTokenizer)
    kept = list((tmp_path / "cache" / "tokenizers").glob("*.json"))
    assert len(kept) == 1 and isinstance(scoring.read_snapshot(kept[0]), scoring.TokenizerSnapshot)
    second = load_scoring_tokenizer(str(folder))
    assert isinstance(second, scoring.ScoringTokenizer)
    text = first.apply_chat_template([{"role": "user", "content": "hello there"}], tokenize=False)
    assert second.apply_chat_template([{"role": "user", "content": "hello there"}]) == text

    (folder / "chat_template.jinja").write_text("{{ messages[0].content }}")
    edited = load_scoring_tokenizer(str(folder))
    assert not isinstance(edited, scoring.ScoringTokenizer)
    assert edited.apply_chat_template([{"role": "user", "content": "hello there"}], tokenize=False) == "hello there"
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.json"))) == 2
    assert load_scoring_tokenizer(str(folder)).apply_chat_template([{"role": "user", "content": "hi"}]) == "hi"


def test_a_damaged_or_refusing_snapshot_loads_transformers(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAEFILTER_CACHE", str(tmp_path / "cache"))
    file = scoring.snapshot_file(model_dir, tmp_path / "cache")
    file.parent.mkdir(parents=True)
    file.write_text("{not json")
    assert not isinstance(load_scoring_tokenizer(str(model_dir)), scoring.ScoringTokenizer)
    assert isinstance(scoring.read_snapshot(file), scoring.TokenizerSnapshot)  # decided again
    scoring.write_snapshot(file, "differs from transformers: decoding a single token")
    assert not isinstance(load_scoring_tokenizer(str(model_dir)), scoring.ScoringTokenizer)
    assert scoring.read_snapshot(file) == "differs from transformers: decoding a single token"  # kept
    assert not isinstance(load_scoring_tokenizer(str(model_dir), trust_remote_code=True), scoring.ScoringTokenizer)


@EMBEDDED
def test_the_embedded_default_prepares_every_row_as_transformers_does():
    reference = load_tokenizer(DEFAULT_MODEL)
    snapshot = scoring.verified_snapshot(reference)
    assert isinstance(snapshot, scoring.TokenizerSnapshot), snapshot
    assert assert_same_as_transformers(reference, scoring.ScoringTokenizer(snapshot)) > 500


@QWEN
def test_qwen_coder_prepares_every_row_as_transformers_does():
    reference = load_tokenizer("qwen2.5-coder-1.5b-instruct")
    snapshot = scoring.verified_snapshot(reference)
    assert isinstance(snapshot, scoring.TokenizerSnapshot), snapshot
    assert assert_same_as_transformers(reference, scoring.ScoringTokenizer(snapshot)) > 500


@EMBEDDED
def test_scoring_a_row_with_a_kept_snapshot_imports_no_transformers(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello! How can I help?"}]}) + "\n")
    code = ("import sys, saefilter\n"
            f"rows = saefilter.score_file({str(rows)!r}, {str(tmp_path / 'out.jsonl')!r})\n"
            "print(sorted(m for m in ('transformers', 'sae_lens') if m in sys.modules))\n")
    (tmp_path / "cache").mkdir()
    load_tokenizer(DEFAULT_MODEL)  # the converted default, which a fresh cache would convert again
    (tmp_path / "cache" / "models").symlink_to(cache_dir() / "models")
    env = {**os.environ, "SAEFILTER_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            for _ in range(2)]
    assert runs[0].stdout.strip().splitlines()[-1] == "['transformers']"  # the first start keeps the snapshot
    assert runs[1].stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize("field", ["bos_token", "eos_token"])
def test_the_template_sees_the_special_tokens(tokenizer, field):
    snapshot = scoring.snapshot_of(tokenizer)
    template = f"{{{{ {field} }}}}|{{{{ messages[0].content }}}}"
    candidate = scoring.ScoringTokenizer(scoring.TokenizerSnapshot(**{**snapshot.__dict__, "chat_template": template}))
    assert candidate.apply_chat_template([{"role": "user", "content": "hi"}]) == \
        f"{snapshot.template_tokens.get(field, '')}|hi"


def test_a_template_that_refuses_some_chats_is_kept_when_it_refuses_them_alike(tokenizer):
    """Templates like Gemma's refuse a system turn or roles that do not alternate: the snapshot must
    refuse the same probe chats, with the same error."""
    refusing = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}"
                "{{ raise_exception('System role not supported') }}{% endif %}"
                "<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    original = tokenizer.chat_template
    tokenizer.chat_template = refusing
    try:
        snapshot = scoring.verified_snapshot(tokenizer)
        assert isinstance(snapshot, scoring.TokenizerSnapshot), snapshot
        candidate = scoring.ScoringTokenizer(snapshot)
        with pytest.raises(Exception, match="System role not supported"):
            candidate.apply_chat_template([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
        assert assert_same_as_transformers(tokenizer, candidate) > 500
    finally:
        tokenizer.chat_template = original
