"""What the terminal shows fits 80 columns, names are never cut, and a flagged row is explained by
the latent above its benign level (not by the probe direction) and by its own tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from saefilter.features.feature_set import load_feature_set
from saefilter.model.named import NAMED_MODELS
from saefilter.outputs.score_files import ScoreOutputs
from saefilter.runs.pipeline import ScoreSummary
from saefilter.terminal import (
    print_eval,
    print_feature_set,
    print_finding,
    print_models,
    print_prune_summary,
    print_report_summary,
    print_score_summary,
)

LONG = "violence, financial, crime +7: " + ", ".join(f"'word{i}'" for i in range(30))


def rendered(print_fn, *args) -> list[str]:
    console = Console(width=80, record=True, color_system=None)
    print_fn(console, *args)
    return console.export_text().splitlines()


def test_models_fit_80_columns_with_every_name_whole():
    lines = rendered(print_models)
    assert max(len(line) for line in lines) <= 80
    for model in NAMED_MODELS:
        assert any(line.startswith(model.name + " ") for line in lines), model.name
        assert any(model.install in line for line in lines), model.install


def score_row(rank: int) -> dict:
    return {
        "line": rank * 3, "rank": rank, "score": 1.0 / rank,
        "top_features": [
            {"direction": 0, "label": "probe: harmful vs benign answers " * 3, "contribution": 0.9, "above_benign": 0.5},
            {"index": 11, "label": "hate: 'a'", "contribution": 0.2, "above_benign": 0.01},
            {"index": 1758, "label": LONG, "contribution": 0.05, "above_benign": 0.04},
        ],
        "top_tokens": [{"token": " poison", "mass": 1.0}, {"token": " smash", "mass": 0.5}],
    }


def test_score_table_fits_80_columns_and_names_the_latent_above_benign(tmp_path: Path):
    rows = [score_row(rank) for rank in range(1, 6)]
    outputs = ScoreOutputs.for_input(tmp_path / "data.jsonl")
    summary = ScoreSummary(tmp_path / "data.jsonl", outputs, 5, 5, 0, 0, 0, 1.0, np.ones(5), rows)
    lines = rendered(print_score_summary, summary)
    assert max(len(line) for line in lines) <= 80
    firsts = [line for line in lines if "#1758 violence, financial, crime" in line]
    assert len(firsts) == 5  # the latent with most above its benign level, not the probe, not #11
    assert not any("probe" in line or "#11 " in line for line in lines)
    assert sum("tokens: 'poison' 'smash'" in line for line in lines) == 5  # the second line of each row


def test_report_features_fit_80_columns():
    summary = {"records": 20, "cutoff": 0.84, "above": 10, "top_features": [
        {"feature": "direction 0", "label": LONG, "contribution": 1.26, "above_benign": 0.49},
        {"feature": 1758, "label": LONG, "contribution": 0.04, "above_benign": 0.03}]}
    lines = rendered(print_report_summary, summary)
    assert max(len(line) for line in lines) <= 80
    assert any(line.lstrip().startswith("#1758") and "0.0300" in line for line in lines)
    assert any(line.lstrip().startswith("dir 0") for line in lines)


def eval_result(method: str, variant: str) -> dict:
    metrics = {"auroc": 0.9, "pairwise_accuracy": 0.85, "average_precision": 0.88,
               "removed_at_10": 0.2, "removed_at_25": 0.48, "removed_at_50": 0.92}
    return {"method": method, "variant": variant, "metrics": metrics,
            "intervals": {"auroc": [0.81, 0.97], "pairwise_accuracy": [0.7, 0.95]}}


def test_eval_table_fits_80_columns_with_every_value_and_judge_name_whole():
    judge = "qwen2.5-coder-1.5b-instruct: log P(yes) - log P(no)"
    report = {"n_pairs": 25, "hook": "blocks.16.hook_resid_post", "results": [
        eval_result("geometric", "mean, k=1, sq-excess, 200 features, excess"), eval_result("judge", judge)]}
    lines = rendered(print_eval, report)
    assert max(len(line) for line in lines) <= 80
    assert sum("0.900 0.81-0.97   0.850 0.70-0.95   0.880   0.20 0.48 0.92" in line for line in lines) == 2
    assert f"judge 1: {judge}" in lines


def test_features_show_fits_80_columns_with_numbers_on_one_line_and_labels_whole():
    from saefilter.scoring.config import resolve_features_path

    feature_set = load_feature_set(resolve_features_path("embedded"))
    lines = rendered(print_feature_set, feature_set, 5)
    assert max(len(line) for line in lines) <= 80
    for feature in feature_set.features[:5]:
        head = next(line for line in lines if line.startswith(f"#{feature.index} "))
        assert f"weight {feature.weight:g}" in head and "benign share" in head  # the numbers on one line
        first_label_words = " ".join(feature.label.split()[:3])
        assert any(line.strip().startswith(first_label_words) for line in lines)  # the label has its own lines
    assert any(line.startswith("direction 0  weight") for line in lines)


def test_check_findings_fit_80_columns_keep_file_and_line_and_name_the_latent():
    from saefilter.outputs.score_files import why_flagged
    from saefilter.runs.check import Finding

    path = "data/train/part-0001.jsonl"
    finding = Finding(path, 12345, 1.0622, why_flagged(score_row(1)))
    lines = rendered(print_finding, finding)
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == f"{path}:12345  1.0622"  # a label that does not fit goes on lines of its own
    label_lines = lines[1:-1]
    assert label_lines[0].startswith("    #1758 violence, financial, crime")  # not the probe
    # wrapped between words, never cut: every word of the label is printed whole
    assert " ".join(" ".join(label_lines).split()) == f"#1758 {LONG}" and "…" not in " ".join(label_lines)
    assert lines[-1] == "    tokens: 'poison' 'smash'"  # a row written before words existed
    short = Finding("d.jsonl", 7, 1.0622, ("#2676 hate, extremism: 'stupid'", "words: 'x'", '"…a phrase…"'))
    assert rendered(print_finding, short) == ["d.jsonl:7  1.0622  #2676 hate, extremism: 'stupid'", "    words: 'x'",
                                              '    "…a phrase…"']
    assert "#1758" in finding.format() and "tokens: 'poison' 'smash'" in finding.format()  # whole, for the cache test


def test_words_and_phrase_end_at_a_whole_word():
    from saefilter.outputs.score_files import why_flagged
    from saefilter.runs.check import Finding

    phrase = " ".join(f"word{i}" for i in range(40))
    row = {**score_row(1), "top_words": [{"word": "undermining", "mass": 1.0}, {"word": "poison", "mass": 0.5}],
           "top_spans": [{"turn": 0, "start": 0, "end": len(phrase), "text": phrase, "peak": "word3", "mass": 1.0}]}
    lines = rendered(print_finding, Finding("d.jsonl", 1, 1.0, why_flagged(row)))
    assert "    words: 'undermining' 'poison'" in lines
    last = lines[-1]
    assert len(last) <= 80 and last.startswith('    "word0 word1') and last.endswith("…")
    assert last[:-1].split()[-1] in phrase.split()  # cut after a whole word


def test_prune_summary_fits_80_columns(tmp_path: Path):
    from saefilter.outputs.prune import PruneResult

    stats = {"mean": 0.8219, "max": 0.9653}
    summary = {"input": str(tmp_path / "mixed_chat.jsonl"), "seed": 20260522, "cutoff": {"fraction": 0.25},
               "counts": {"kept": 15, "removed": 5, "random_removed": 5, "unscorable": 1},
               "score_stats": {"kept": stats, "removed": stats, "random_removed": stats}}
    paths = [tmp_path / f"mixed_chat.{name}.jsonl" for name in ("pruned", "removed", "random")]
    lines = rendered(print_prune_summary, PruneResult(*paths, tmp_path / "mixed_chat.prune.json", summary))
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80
    assert f"pruned  -> {paths[0]}" in lines  # paths whole on one line (the terminal wraps them), for copying
    assert f"saefilter prune: {tmp_path / 'mixed_chat.jsonl'}" in lines
    assert "kept + removed + unscorable = input: checked" in lines
    assert any("unscorable (see prune.json)" in line for line in lines)


def test_prune_summary_with_a_judge_fits_80_columns(tmp_path: Path):
    from saefilter.outputs.prune import PruneResult

    stats = {"mean": 0.8219, "max": 0.9653}
    summary = {"input": str(tmp_path / "mix.jsonl"), "seed": 20260522, "cutoff": {"fraction": 0.5},
               "counts": {"kept": 250, "removed": 250, "random_removed": 250, "judge_removed": 250, "unscorable": 0},
               "score_stats": {key: stats for key in ("kept", "removed", "random_removed", "judge_removed")},
               "judge": {"model": "qwen2.5-coder-1.5b-instruct", "cost": {"rows": 500, "seconds": 1287.39},
                         "removed_overlap": {"score & random": 131, "score & judge": 128, "random & judge": 129,
                                             "score & random & judge": 65}}}
    paths = [tmp_path / f"mix.{name}.jsonl" for name in ("pruned", "removed", "random")]
    result = PruneResult(*paths, tmp_path / "mix.prune.json", summary, judge=tmp_path / "mix.judge.jsonl")
    lines = rendered(print_prune_summary, result)
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80
    assert "judge qwen2.5-coder-1.5b-instruct: 500 rows, 1,287 s" in lines
    assert "  score & random 131, score & judge 128, random & judge 129, all three 65" in lines
