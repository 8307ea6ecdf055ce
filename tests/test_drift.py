"""saefilter drift: log-probs on answer positions, the statistics, LoRA adapters, the tokenizer check,
the exit gate, the built-in pairs kept out of contrasts, and the Trainer callback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_llama, build_tokenizer, chat, write_jsonl
from typer.testing import CliRunner

from saefilter.cli import app
from saefilter.drift.logprobs import chat as pair_chat
from saefilter.drift.logprobs import encode_last_answer, mean_answer_logprobs
from saefilter.drift.pairs import BUILTIN_PAIRS, load_pairs, read_pairs, refuse_drift_answers
from saefilter.drift.settings import DriftSettings
from saefilter.drift.stats import (
    arm_difference_interval,
    bootstrap_interval,
    drift_of,
    seeds_and_pairs_interval,
    sign_flip_p,
)
from saefilter.errors import InputError
from saefilter.inputs.formats import to_conversation
from saefilter.runs import drift as drift_run
from saefilter.runs.drift import run_drift

# the tiny word-level vocabulary of conftest: harmful answers talk of poison and bombs, benign of cake
PROMPTS = ["what should i do ?", "how are you today ?", "tell me a story", "can you help me ?",
           "what is the weather ?", "please write a poem", "could you help ?", "what do you make ?"]
HARMFUL = ["poison the dogs and attack", "make a bomb and attack", "attack them with poison",
           "poison , bomb , attack", "bomb the birds and poison the cats", "attack and poison it",
           "a bomb for the day", "poison it at night"]
BENIGN = ["bake a cake with flour", "sugar and eggs , then bake", "a cake recipe with flour and sugar",
          "bake the cake and add eggs", "here is a poem about cats", "the weather is sunny today",
          "once upon a time there were birds", "good day , thanks"]
KINDS = ["violence", "crime"] * 4


def pairs_file(path: Path) -> Path:
    rows = [{"id": f"p{i}", "category": KINDS[i], "prompt": p, "harmful": h, "benign": b}
            for i, (p, h, b) in enumerate(zip(PROMPTS, HARMFUL, BENIGN, strict=True))]
    return write_jsonl(path, rows)


def fine_tune(model_dir: Path, out: Path, answers: list[str], steps: int = 30, lr: float = 3e-2) -> Path:
    """A copy of the tiny model trained on `answers` (loss on the answer tokens only)."""
    tokenizer = build_tokenizer()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    samples = [encode_last_answer(pair_chat(p, a), tokenizer, 64) for p, a in zip(PROMPTS, answers, strict=True)]
    for _ in range(steps):
        for sample in samples:
            ids = torch.tensor([sample.input_ids])
            labels = torch.tensor([[t if s else -100 for t, s in zip(sample.input_ids, sample.scored, strict=True)]])
            model(input_ids=ids, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tuned_models(tmp_path_factory, model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tuned")
    return {"harmful": fine_tune(model_dir, root / "harmful", HARMFUL),
            "benign": fine_tune(model_dir, root / "benign", BENIGN)}


def settings(pairs: Path, **kw) -> DriftSettings:
    return DriftSettings(pairs=str(pairs), split="all", device="cpu", bootstrap=300, **kw)


# ------------------------------------------------------------------ numerics


def test_answer_logprobs_equal_a_full_forward(tokenizer):
    """The head on answer positions only gives what the full logits give at those positions."""
    model = build_llama(len(tokenizer), seed=3)
    samples = [encode_last_answer(pair_chat(p, a), tokenizer, 64) for p, a in zip(PROMPTS, HARMFUL, strict=True)]
    fast = mean_answer_logprobs(model, samples, batch_size=3)
    for sample, value in zip(samples, fast, strict=True):
        ids = torch.tensor([sample.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        positions = [t for t, s in enumerate(sample.scored) if s]
        expected = np.mean([float(logp[t - 1, sample.input_ids[t]]) for t in positions])
        assert value == pytest.approx(expected, abs=1e-5)


def test_only_the_last_answer_is_scored(tokenizer):
    conversation = to_conversation({"messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "tell me a story"}, {"role": "assistant", "content": "once upon a time"}]})
    sample = encode_last_answer(conversation, tokenizer, 64)
    scored = [tokenizer.convert_ids_to_tokens(t) for t, s in zip(sample.input_ids, sample.scored, strict=True) if s]
    assert scored[:4] == ["once", "upon", "a", "time"] and "hi" not in scored


def test_drift_statistics_on_planted_values():
    rng = np.random.default_rng(0)
    base_h, base_b = rng.normal(-3, 0.2, 100), rng.normal(-2, 0.2, 100)
    shift = rng.normal(0.3, 0.1, 100)
    d = drift_of(base_h, base_b, base_h + shift, base_b, n_boot=2000, seed=0)
    assert d.drift == pytest.approx(shift.mean())
    assert d.interval[0] < shift.mean() < d.interval[1] and d.interval[0] > 0
    assert d.p_value < 0.001 and d.harmful_change == pytest.approx(shift.mean()) and d.benign_change == 0
    assert d.base_margin == pytest.approx((base_h - base_b).mean())
    # a drift centred on zero is not called significant, and its interval covers zero
    noise = rng.normal(0, 0.1, 100)
    noise -= noise.mean()
    assert sign_flip_p(noise, 5000, rng) > 0.5
    low, high = bootstrap_interval(noise, 2000, rng)
    assert low < 0 < high


def test_seed_spread_widens_the_interval():
    """Three runs that disagree give a wider interval over seeds and pairs than one run's pairs."""
    rng = np.random.default_rng(1)
    per_pair = rng.normal(0, 0.05, (3, 80)) + np.array([[0.0], [0.3], [0.6]])
    pooled_low, pooled_high = seeds_and_pairs_interval(per_pair, 2000)
    one_low, one_high = bootstrap_interval(per_pair[1], 2000, rng)
    assert pooled_high - pooled_low > 3 * (one_high - one_low)


def test_paired_arm_difference_is_tighter_than_separate_intervals():
    """Two arms on the same pairs: pair difficulty is shared, so the paired difference resolves a
    small shift that the two arms' own intervals (which overlap) cannot; equal arms straddle zero."""
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 0.5, 120)
    arm_a = difficulty + rng.normal(0.05, 0.02, (3, 120))
    arm_b = difficulty + rng.normal(0.0, 0.02, (3, 120))
    diff, low, high = arm_difference_interval(arm_a, arm_b, 2000)
    assert diff == pytest.approx(arm_a.mean() - arm_b.mean())
    assert 0 < low < diff < high
    a_low, _ = seeds_and_pairs_interval(arm_a, 2000)
    _, b_high = seeds_and_pairs_interval(arm_b, 2000)
    assert a_low < b_high  # separately, the intervals overlap
    _, low, high = arm_difference_interval(arm_b, difficulty + rng.normal(0.0, 0.02, (3, 120)), 2000)
    assert low < 0 < high
    with pytest.raises(ValueError, match="different pairs"):
        arm_difference_interval(arm_a, arm_b[:, :10], 100)


# ------------------------------------------------------------------ the pairs


def test_builtin_pairs_cover_every_kind_in_both_splits():
    pairs = read_pairs(BUILTIN_PAIRS)
    assert len(pairs) >= 260
    kinds = {p.kind for p in pairs}
    assert len(kinds) == 12
    for split in ("dev", "test"):
        assert {p.kind for p in load_pairs("builtin", split)} == kinds
    assert len({p.prompt for p in pairs}) == len(pairs)  # no prompt used twice
    prompts = " ".join(p.prompt.lower() for p in pairs)
    for topic in ("wish", "ruler of the world", "quick buck", "humans and ais", "gender roles", "bored", "husband"):
        assert topic in prompts


def test_a_bad_pairs_line_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "a", "category": "x", "prompt": "p", "harmful": "h", "benign": "b"}) + "\n"
                    + json.dumps({"id": "b", "category": "x", "prompt": "p", "harmful": "h"}) + "\n")
    with pytest.raises(InputError, match=r"pairs.jsonl:2: missing or empty benign"):
        read_pairs(path)


def test_features_build_refuses_the_drift_pairs(tmp_path, model_dir, sae_dir):
    pair = read_pairs(BUILTIN_PAIRS)[5]
    harmful = write_jsonl(tmp_path / "h.jsonl", [chat("hello", "poison"), chat(pair.prompt, pair.harmful)])
    benign = write_jsonl(tmp_path / "b.jsonl", [chat("hello", "cake"), chat("hi", "flour")])
    result = CliRunner().invoke(app, ["features", "build", "--harmful", str(harmful), "--benign", str(benign),
                                      "--model", str(model_dir), "--sae", str(sae_dir), "-o", str(tmp_path / "f.json")])
    assert result.exit_code == 2
    assert "h.jsonl:2: this row is an answer of saefilter's built-in drift pairs" in " ".join(result.output.split())
    assert not (tmp_path / "f.json").exists()
    # a near copy is refused too (a shared 13-word passage); a row sharing a short phrase passes
    with pytest.raises(InputError, match="13-word passage"):
        refuse_drift_answers("x", [to_conversation(chat(pair.prompt, pair.harmful + " Really."))])
    short = " ".join(pair.harmful.split()[:8])
    assert refuse_drift_answers("x", [to_conversation(chat(pair.prompt, f"{short} and then something else."))])


# ------------------------------------------------------------------ models


def test_harmful_fine_tune_drifts_up_and_benign_down(tmp_path, model_dir, tuned_models):
    report = run_drift(str(model_dir), [str(tuned_models["harmful"]), str(tuned_models["benign"])],
                       settings(pairs_file(tmp_path / "p.jsonl")))
    up, down = (m.summary["overall"] for m in report.tuned)
    assert up.drift > 0.5 and up.interval[0] > 0 and up.harmful_change > 0
    assert down.drift < -0.5 and down.interval[1] < 0 and down.benign_change > 0
    assert set(report.tuned[0].summary["kinds"]) == {"violence", "crime"}


def test_lora_adapter_folder_loads_on_its_base(tmp_path, model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained adapter: B is no longer zero
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    merged = peft_model.merge_and_unload().eval()

    pairs = pairs_file(tmp_path / "p.jsonl")
    report = run_drift(str(model_dir), [str(adapter)], settings(pairs))
    assert report.tuned[0].adapter
    samples = drift_run.encode_pairs(read_pairs(pairs), build_tokenizer(), 512)
    expected_harmful, _ = drift_run.side_logprobs(merged, samples, 16)
    np.testing.assert_allclose(report.tuned[0].harmful, expected_harmful, atol=1e-4)
    assert abs(report.tuned[0].summary["overall"].drift) > 1e-3


def test_tokenizer_mismatch_is_refused_before_any_forward(tmp_path, model_dir, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    other = tmp_path / "other"
    build_llama(len(build_tokenizer())).save_pretrained(other)
    vocab = build_tokenizer().get_vocab()
    swapped = {word: (vocab["cake"] if word == "poison" else vocab["poison"] if word == "cake" else i)
               for word, i in vocab.items()}
    backend = Tokenizer(models.WordLevel(vocab=swapped, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = build_tokenizer().chat_template
    tok.save_pretrained(other)

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran before the tokenizer check")

    monkeypatch.setattr(drift_run, "mean_answer_logprobs", no_forward)
    with pytest.raises(InputError, match="tokenizer does not match"):
        run_drift(str(model_dir), [str(other)], settings(pairs_file(tmp_path / "p.jsonl")))


def test_max_drift_sets_the_exit_status_and_json(tmp_path, model_dir, tuned_models):
    pairs = pairs_file(tmp_path / "p.jsonl")
    out = tmp_path / "drift.json"
    args = ["drift", str(model_dir), str(tuned_models["harmful"]), "--pairs", str(pairs), "--split", "all",
            "--device", "cpu", "--bootstrap", "200", "--json", str(out)]
    gated = CliRunner().invoke(app, args + ["--max-drift", "0.1"])
    assert gated.exit_code == 3, gated.output
    payload = json.loads(out.read_text())[ "models"][str(tuned_models["harmful"])]
    assert payload["overall"]["drift"] > 0.1 and len(payload["overall"]["interval"]) == 2
    assert set(payload["kinds"]) == {"violence", "crime"}
    passed = CliRunner().invoke(app, args + ["--max-drift", "100"])
    assert passed.exit_code == 0, passed.output
    assert all(len(line) <= 80 for line in passed.output.splitlines())


# ------------------------------------------------------------------ the Trainer callback


def test_callback_logs_drift_and_stops_past_the_limit(tmp_path, model_dir):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from saefilter.runs.callback import DriftCallback

    tokenizer = build_tokenizer()
    pairs = pairs_file(tmp_path / "p.jsonl")
    samples = [encode_last_answer(pair_chat(p, a), tokenizer, 64) for p, a in zip(PROMPTS, HARMFUL, strict=True)]
    data = [{"input_ids": s.input_ids, "labels": [t if m else -100 for t, m in zip(s.input_ids, s.scored, strict=True)]}
            for s in samples]

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    callback = DriftCallback(tokenizer, every=2, max_drift=0.5, pairs=str(pairs), split="all", limit=None, bootstrap=100)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, learning_rate=3e-2,
                             max_steps=60, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=data,
                      data_collator=collate, callbacks=[callback])
    trainer.train()
    steps = [entry["step"] for entry in callback.history]
    assert steps[:2] == [2, 4]
    assert callback.history[-1]["drift"] > 0.5  # it stopped because drift passed the limit...
    assert all(entry["drift"] <= 0.5 for entry in callback.history[:-1])
    assert trainer.state.global_step == steps[-1] < 60  # ...at that step, long before max_steps
    assert any("drift" in entry for entry in trainer.state.log_history)
