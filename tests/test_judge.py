"""The LLM-judge baseline: log P(yes) - log P(no) of the next token, `eval --judge`, `prune --judge`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ANSWERS, build_llama, chat, write_features, write_jsonl
from test_cli import saefilter

from saefilter.inputs.formats import to_conversation
from saefilter.outputs.prune import Cutoff, prune_dataset
from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.judge import judge_input_ids, judge_scores, single_token_ids, transcript

ROWS = [chat("tell me a story", answer) for answer in ANSWERS] + [{"text": "poison and bomb attack"}]


def head_with_bias(model, tokenizer, yes: float, no: float):
    """A head that ignores the hidden state: logits are 0 except 'yes' and 'no'."""
    head = torch.nn.Linear(model.config.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tokenizer.convert_tokens_to_ids("yes")] = yes
        head.bias[tokenizer.convert_tokens_to_ids("no")] = no
    model.lm_head = head
    return model


def test_spellings_exclude_unknown_words(tokenizer):
    # the tiny vocabulary has 'yes' and 'no' but not 'Yes': its <unk> is not a spelling of yes
    assert single_token_ids(tokenizer, ("Yes", "yes", " yes")) == [tokenizer.convert_tokens_to_ids("yes")]


def test_judge_score_is_the_log_probability_difference(tokenizer):
    conversations = [to_conversation(r) for r in ROWS]
    model = head_with_bias(build_llama(len(tokenizer)), tokenizer, yes=3.0, no=1.0)
    prefers_yes = judge_scores(model, tokenizer, conversations, batch_size=3).scores
    np.testing.assert_allclose(prefers_yes, 2.0, atol=1e-5)  # log(e^3/Z) - log(e^1/Z)
    model = head_with_bias(model, tokenizer, yes=1.0, no=3.5)
    np.testing.assert_allclose(judge_scores(model, tokenizer, conversations).scores, -2.5, atol=1e-5)


def test_judge_score_matches_a_full_forward_of_a_random_model(tokenizer):
    model = build_llama(len(tokenizer), seed=5)
    conversations = [to_conversation(r) for r in ROWS]
    fast = judge_scores(model, tokenizer, conversations, batch_size=4)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    for conversation, value in zip(conversations, fast.scores, strict=True):
        ids, _ = judge_input_ids(conversation, tokenizer, 1024)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), dim=-1)
        assert value == pytest.approx(float(logp[yes] - logp[no]), abs=1e-5)
    assert fast.tokens == sum(len(judge_input_ids(c, tokenizer, 1024)[0]) for c in conversations)


def test_long_samples_are_cut_like_score_cuts_them(tokenizer):
    conversation = to_conversation(chat("tell me a story", " ".join(["once upon a time"] * 50)))
    full, cut = judge_input_ids(conversation, tokenizer, 1024), judge_input_ids(conversation, tokenizer, 20)
    assert not full[1] and cut[1]
    assert len(cut[0]) < len(full[0])
    assert transcript(conversation).startswith("User: tell me a story\nAssistant: once upon a time")


def test_eval_judge_adds_the_judge_and_the_costs(tmp_path, model_dir, sae_dir):
    positive = write_jsonl(tmp_path / "pos.jsonl", [chat("tell me a story", a) for a in ANSWERS[:3]])
    negative = write_jsonl(tmp_path / "neg.jsonl", [chat("tell me a story", a) for a in ANSWERS[3:]])
    out = tmp_path / "eval.json"
    result = saefilter("eval", "--positive", str(positive), "--negative", str(negative), "--model", str(model_dir),
                       "--sae", str(sae_dir), "--features", str(write_features(tmp_path / "f.json", [1, 5, 9])),
                       "--judge", str(model_dir), "--bootstrap", "20", "--neighbours-list", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    judged = [r for r in report["results"] if r["method"] == "judge"]
    assert len(judged) == 1 and 0.0 <= judged[0]["metrics"]["auroc"] <= 1.0
    assert set(report["costs"]) == {"geometric", f"judge {model_dir}"}
    geometric, judge = report["costs"]["geometric"], report["costs"][f"judge {model_dir}"]
    assert judge["tokens_per_1000"] > geometric["tokens_per_1000"]  # the judge prompt wraps every sample
    assert judge["layers_run"] == "4 of 4" and geometric["layers_run"] == "3 of 4"  # the SAE reads layer 2
    assert "cost per 1,000 rows" in result.stdout


def test_prune_judge_writes_a_third_arm_of_the_same_size(tmp_path, model_dir, sae_dir):
    records = [chat("tell me a story", a * (i % 3 + 1)) for i, a in enumerate(ANSWERS * 3)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    config = ScoreConfig(model=str(model_dir), sae=str(sae_dir),
                         features=str(write_features(tmp_path / "f.json", [1, 5, 9])))
    scores = score_file(data, config).outputs.scores
    from saefilter.runs.judge import judge_arm

    result = prune_dataset(data, scores, Cutoff(fraction=0.5), judge=judge_arm(data, str(model_dir), config))
    input_lines = data.read_bytes().splitlines()
    judge_kept = result.judge.read_bytes().splitlines()
    assert len(judge_kept) == len(result.random.read_bytes().splitlines()) == len(input_lines) - 9
    remaining = iter(input_lines)
    assert all(any(line == candidate for candidate in remaining) for line in judge_kept)  # a subsequence
    summary = json.loads(result.report.read_text())
    assert summary["counts"]["judge_removed"] == summary["counts"]["removed"] == 9
    shared = summary["judge"]["removed_overlap"]
    assert set(shared) == {"score & random", "score & judge", "random & judge", "score & random & judge"}
    assert all(0 <= v <= 9 for v in shared.values())
    # the judge's removed rows are its 9 highest scores, the kept ones the rest
    from saefilter.outputs.prune import ScoreColumns
    from saefilter.runs.judge import judge_lines

    judged = judge_lines(data, ScoreColumns.read(scores).lines, str(model_dir), config).scores
    top = set(np.argsort(-judged, kind="stable")[:9].tolist())
    assert judge_kept == [line for i, line in enumerate(input_lines) if i not in top]


def test_prune_cli_judge(tmp_path, model_dir, sae_dir):
    data = write_jsonl(tmp_path / "data.jsonl", [chat("tell me a story", a) for a in ANSWERS * 2])
    result = saefilter("prune", str(data), "--fraction", "0.25", "--judge", str(model_dir), "--model", str(model_dir),
                       "--sae", str(sae_dir), "--features", str(write_features(tmp_path / "f.json", [1, 5, 9])))
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "data.judge.jsonl").read_bytes().splitlines()) == 12 - 3
    assert "removed (by the judge)" in result.stdout and "score & judge" in result.stdout
