"""Metrics, and `saefilter eval` on the planted SAE."""

import json

import numpy as np
import pytest
from conftest import ANSWERS, TRIGGER, chat, write_features, write_jsonl
from reference_scoring import score_sample

from saefilter.sae.geometry import feature_proximity
from saefilter.scoring.methods import direct_scores, geometric_scores
from saefilter.scoring.metrics import all_metrics, auroc, average_precision, bootstrap_intervals, positives_removed


def test_auroc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)
    labels = rng.integers(0, 2, size=60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(scores, labels) == pytest.approx(pairwise)


def test_perfect_and_inverted_rankings():
    labels = np.array([1, 1, 0, 0, 0, 0])
    good = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.0])
    assert auroc(good, labels) == 1.0 and average_precision(good, labels) == 1.0
    assert auroc(-good, labels) == 0.0
    assert positives_removed(good, labels, 0.5) == 1.0
    assert all_metrics(good, labels)["removed_at_25"] == pytest.approx(1.0)  # top round(1.5) = 2 rows: both positives
    low, high = bootstrap_intervals(good, labels, n_resamples=50)["auroc"]
    assert low == high == 1.0


def test_vectorised_scores_equal_the_per_sample_score():
    rng = np.random.default_rng(2)
    decoder = rng.normal(size=(30, 8)).astype(np.float32)
    prox = feature_proximity(decoder, [1, 4], [1.0, 1.0], 2)
    acts = np.maximum(rng.normal(size=(6, 30)), 0).astype(np.float32)
    expected = [score_sample(acts[i : i + 1], prox, "max", 2).score for i in range(6)]
    np.testing.assert_allclose(geometric_scores(acts, prox.proximity), expected, rtol=1e-6)
    np.testing.assert_allclose(direct_scores(acts, [1, 4], [1.0, 1.0]), (acts[:, 1] + acts[:, 4]) / acts.sum(1), rtol=1e-6)


def test_eval_cli_separates_planted_positives(tmp_path, model_dir, planted):
    from test_cli import saefilter

    positive = write_jsonl(tmp_path / "pos.jsonl", [chat("tell me a story", f"{TRIGGER} {a}") for a in ANSWERS])
    negative = write_jsonl(tmp_path / "neg.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    out = tmp_path / "eval.json"
    result = saefilter("eval", "--positive", str(positive), "--negative", str(negative), "--anchors", str(positive),
                       "--model", str(model_dir), "--sae", str(planted), "--features", str(features),
                       "--bootstrap", "50", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    by_method = {(r["method"], r["variant"]): r["metrics"] for r in report["results"]}
    assert by_method[("geometric", "max, k=1, linear, 1 features")]["auroc"] == 1.0
    assert by_method[("direct", "max, 1 features")]["auroc"] == 1.0
    assert by_method[("random", "expectation")]["auroc"] == 0.5
    assert any(method == "repmatch" for method, _ in by_method)
    assert report["n_positive"] == report["n_negative"] == len(ANSWERS)


def test_evaluate_config_runs_without_the_cli_and_reads_labelled_files(tmp_path, model_dir, planted):
    from saefilter.errors import InputError
    from saefilter.runs.evaluate import EvalRequest, evaluate_config
    from saefilter.scoring.config import ScoreConfig

    rows = [{**chat("tell me a story", f"{TRIGGER} {a}"), "bad": True} for a in ANSWERS]
    rows += [{**chat("tell me a story", a), "bad": False} for a in ANSWERS]
    data = write_jsonl(tmp_path / "labelled.jsonl", rows)
    config = ScoreConfig(model=str(model_dir), sae=str(planted), features=str(write_features(tmp_path / "f.json", [0], d_sae=48)))
    seen = []

    def progress(label, total):
        from contextlib import nullcontext

        seen.append((label, total))
        return nullcontext(lambda n: None)

    report = evaluate_config(config, EvalRequest(data=data, labels="bad", neighbours=[1], bootstrap=20), progress)
    assert (report["n_positive"], report["n_negative"]) == (len(ANSWERS), len(ANSWERS))
    assert seen == [("encoding", 2 * len(ANSWERS))]
    geometric = next(r for r in report["results"] if r["method"] == "geometric")
    assert geometric["metrics"]["auroc"] == 1.0
    with pytest.raises(InputError, match="--labels"):
        evaluate_config(config, EvalRequest(data=data))


def test_pairwise_accuracy_counts_pairs_the_right_way_round():
    from saefilter.scoring.metrics import pairwise_accuracy, pairwise_interval

    harmful, benign = np.array([0.9, 0.5, 0.2, 0.4]), np.array([0.1, 0.6, 0.2, 0.3])
    assert pairwise_accuracy(harmful, benign) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    low, high = pairwise_interval(harmful, benign, n_resamples=200)
    assert 0.0 <= low <= pairwise_accuracy(harmful, benign) <= high <= 1.0
    assert pairwise_interval(np.ones(5), np.zeros(5), n_resamples=50) == (1.0, 1.0)


def test_read_pairs_takes_both_layouts_and_names_a_bad_line(tmp_path):
    from saefilter.errors import InputError
    from saefilter.inputs.reference import read_pair_sides

    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "tell me a story", "harmful": f"{TRIGGER} it", "benign": "once upon a time"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: poison bomb"},
    ])
    (h1, b1), (h2, b2) = list(read_pair_sides(path))
    assert [t.content for t in h1.turns] == ["tell me a story", f"{TRIGGER} it"] and b1.turns[1].content == "once upon a time"
    assert [(t.role, t.content) for t in h2.turns] == [("user", "hi"), ("assistant", "poison bomb")]
    assert b2.turns[1].content == "hello there"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "harmful": "y"}])
    with pytest.raises(InputError, match=r"bad\.jsonl:1: a pair needs"):
        list(read_pair_sides(bad))


def test_eval_pairs_reports_pairwise_accuracy(tmp_path, model_dir, planted):
    from test_cli import saefilter

    rows = [{"prompt": "tell me a story", "harmful": f"{TRIGGER} {a}", "benign": a} for a in ANSWERS]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    out = tmp_path / "eval.json"
    result = saefilter("eval", "--pairs", str(pairs), "--model", str(model_dir), "--sae", str(planted),
                       "--features", str(features), "--neighbours-list", "1", "--bootstrap", "50", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "pairwise acc." in result.stdout
    report = json.loads(out.read_text())
    assert report["n_pairs"] == len(ANSWERS)
    geometric = next(r for r in report["results"] if r["variant"] == "max, k=1, linear, 1 features")
    assert geometric["metrics"]["pairwise_accuracy"] == 1.0
    assert geometric["intervals"]["pairwise_accuracy"] == [1.0, 1.0]
    seeded = next(r for r in report["results"] if r["method"] == "random" and r["variant"].startswith("seeded"))
    assert 0.0 <= seeded["metrics"]["pairwise_accuracy"] <= 1.0
    both = saefilter("eval", "--pairs", str(pairs), "--data", str(pairs), "--labels", "x", "--model", str(model_dir),
                     "--sae", str(planted), "--features", str(features))
    assert both.returncode != 0 and "give one of" in both.stderr
