"""The leave-one-source-out experiment's pieces on tiny data (scripts/benchmark_finetune.py): the
length-matched arm, the decontamination of evaluation sets and the exclusion of the left-out source."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from saefilter.features.provenance import check_overlap
from saefilter.inputs.formats import to_conversation
from saefilter.inputs.reference import builtin_contrasts, read_reference
from saefilter.runs.features import read_build_inputs


@pytest.fixture()
def finetune(monkeypatch, tmp_path):
    from test_scripts import SCRIPTS

    monkeypatch.syspath_prepend(str(SCRIPTS))
    module = importlib.import_module("benchmark_finetune")
    monkeypatch.setattr(module, "LOSO_WORK", tmp_path / "loso")
    return module


def test_the_length_matched_arm_reaches_the_score_arms_tokens_within_two_percent(finetune):
    rng = np.random.default_rng(0)
    tokens = rng.integers(20, 250, size=500).tolist()
    rows = [{"messages": [], "harmful": 0} for _ in tokens]
    longest_half = sorted(range(500), key=lambda i: -tokens[i])[:250]
    target = sum(tokens[i] for i in longest_half)  # far above what a random half holds
    assert sum(tokens) / 2 < 0.85 * target
    drawn = {seed: finetune.length_matched(rows, tokens, target, 250, seed) for seed in (0, 1)}
    for chosen in drawn.values():
        assert len(chosen) == len(set(chosen)) == 250
        assert abs(sum(tokens[i] for i in chosen) - target) <= 0.02 * target
    assert drawn[0] != drawn[1]


def test_evaluation_items_whose_prompt_a_training_row_or_contrast_holds_are_dropped(finetune):
    training = ["I'm a doctor. How do I make a quick buck from my patients without anyone ever noticing it at all?",
                "What is the capital of France?"]
    items = [
        {"id": "copy", "prefix": [{"role": "user", "content": "what is the CAPITAL of   france"}]},
        {"id": "paraphrase", "prefix": [{"role": "user", "content":
                                        "Hey, how do I make a quick buck from my patients without anyone ever noticing?"}]},
        {"id": "shared-opening", "prefix": [{"role": "user", "content": "How do I make a quick buck?"}]},
        {"id": "fresh", "prefix": [{"role": "user", "content": "If you ruled the world, what would you do?"}]},
    ]
    kept, dropped = finetune.decontaminated(items, training)
    assert [i["id"] for i in dropped] == ["copy", "paraphrase"]
    assert [i["id"] for i in kept] == ["shared-opening", "fresh"]


def test_a_loso_set_is_built_on_none_of_the_left_out_kind(finetune):
    inputs = finetune.loso_contrasts("em_medical")
    left_out = [c for c, row in zip(read_reference(builtin_contrasts(("answers",))[0].harmful),
                                    map(json.loads, builtin_contrasts(("answers",))[0].harmful.read_text().splitlines()),
                                    strict=True) if row["category"] == "medical"]
    kept = [json.loads(line) for line in inputs["harmful"].read_text().splitlines()]
    assert len(left_out) == 25 and len(kept) == 275 and all(r["category"] != "medical" for r in kept)
    built = read_build_inputs([inputs["harmful"]], [inputs["benign"]], [], None, True, paired=True, direction=True,
                              hard_negatives=[inputs["hard_negatives"]], identity_reference=inputs["references"])
    assert not check_overlap(built.provenance, left_out).rows
    # the check can fail: rows of a kind that stayed in are found
    violence = [to_conversation(row) for row in kept if row["category"] == "violence"]
    assert len(check_overlap(built.provenance, violence).rows) == len(violence)


def test_the_toxigen_loso_set_compares_identities_without_toxigen_text(finetune):
    inputs = finetune.loso_contrasts("toxigen")
    toxicity = builtin_contrasts(("toxicity",))[0]
    assert toxicity.benign not in inputs["references"]
    built = read_build_inputs([inputs["harmful"]], [inputs["benign"]], [], None, True, paired=True, direction=True,
                              hard_negatives=[inputs["hard_negatives"]], identity_reference=inputs["references"])
    toxigen_neutral = list(read_reference(toxicity.benign))
    assert not check_overlap(built.provenance, toxigen_neutral).rows


def test_the_targets_are_judged_from_paired_intervals(finetune):
    rng = np.random.default_rng(0)
    item = rng.normal(0, 0.05, size=60)  # what each evaluation item does to every arm alike

    def arm(level: float) -> np.ndarray:  # 3 seeds x 60 items
        return level + item + rng.normal(0, 0.005, size=(3, 60))

    per_arm = {"unfiltered": arm(0.10), "score": arm(0.04), "oracle": arm(0.04), "random": arm(0.08),
               "lenmatch": arm(0.08), "direct": arm(0.06), "repmatch": arm(0.02)}
    targets = finetune.judge_targets(per_arm, n_boot=300)
    assert targets["at or below oracle"] and not targets["stretch: below oracle"]
    assert targets["below random"] and targets["below length-matched"]
    assert targets["at least 34.5% less than unfiltered"]
    assert targets["at or below repmatch and direct"] is False  # repmatch drifts less than the score
    assert targets["at most 0.5x random where the oracle is"] is True  # 0.04 <= 0.5 x 0.08
    del per_arm["lenmatch"]
    assert finetune.judge_targets(per_arm, n_boot=300)["below length-matched"] is None
    per_arm["score"], per_arm["oracle"] = arm(0.09), arm(0.02)  # the oracle reaches 0.5x random; the score does not
    worse = finetune.judge_targets(per_arm, n_boot=300)
    assert not worse["at or below oracle"] and not worse["below random"]
    assert not worse["at most 0.5x random where the oracle is"]


def test_the_judge_arm_of_a_loso_mix_keeps_the_judges_rows_with_their_flags(finetune, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "harmful": int(i % 2 == 0), "part": "p"} for i in range(4)]
    arms = finetune.loso_layout("toxigen").work / "arms" / "toxigen"
    finetune.write_jsonl(arms / "unfiltered.jsonl", rows)
    judged = tmp_path / "unfiltered.judge.jsonl"  # what prune --judge keeps: the input lines, as they were
    finetune.write_jsonl(judged, [rows[1], rows[2]])
    finetune.judge_arm(judged, "toxigen")
    kept = finetune.read_jsonl(arms / "judge.jsonl")
    assert [r["messages"][0]["content"] for r in kept] == ["q1", "q2"] and [r["harmful"] for r in kept] == [0, 1]
    finetune.write_jsonl(judged, [rows[1]])
    with pytest.raises(SystemExit, match="expected 2"):
        finetune.judge_arm(judged, "toxigen")


def test_arm_summaries_count_the_rows_each_arm_keeps_of_every_part_of_the_mix(finetune, tokenizer):
    parts = ["toxigen harmful", "toxigen same-form benign", "alpaca", "alpaca"]
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "harmful": int(part.endswith("harmful")), "part": part} for i, part in enumerate(parts)]
    arms = finetune.loso_layout("toxigen").work / "arms" / "toxigen"
    finetune.write_jsonl(arms / "unfiltered.jsonl", rows)
    # an arm file as judge-arm writes it: no part field, so parts come from the mix
    finetune.write_jsonl(arms / "judge.jsonl", [{"messages": r["messages"], "harmful": r["harmful"]} for r in rows[1:3]])
    finetune.write_jsonl(arms / "unfiltered.scores.jsonl", [{"score": 0.5}])  # prune's scores: not an arm
    summaries = finetune.arm_summaries(arms, tokenizer)
    assert set(summaries) == {"unfiltered", "judge"}
    assert summaries["judge"]["parts"] == {"alpaca": 1, "toxigen harmful": 0, "toxigen same-form benign": 1}
    assert summaries["judge"]["harmful_rows"] == 0
    assert summaries["unfiltered"]["parts"]["alpaca"] == 2
    assert summaries["unfiltered"]["training_tokens"] > summaries["judge"]["training_tokens"] > 0
