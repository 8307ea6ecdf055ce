"""Calibration on benign text: the suggested threshold, and explanations ranked above a benign baseline."""

import json

import numpy as np
import pytest
from conftest import chat, write_features, write_jsonl
from test_cli import saefilter

from saefilter.errors import InputError
from saefilter.features.calibrate import calibrated
from saefilter.features.feature_set import FeatureSet, HarmfulFeature, load_feature_set, save_feature_set
from saefilter.outputs.report import feature_table
from saefilter.scoring.sample import top_shares

SETTINGS = {"aggregation": "mean", "neighbours": 1, "kernel": "sq-excess", "tokens": "response"}


def three_features() -> FeatureSet:
    return FeatureSet(tuple(HarmfulFeature(i, f"f{i}") for i in (3, 7, 11)), d_sae=16)


def test_calibrated_stores_the_percentile_and_each_features_benign_mean():
    contributions = np.array([[0.30, 0.00, 0.01], [0.28, 0.02, 0.00], [0.32, 0.00, 0.05], [0.30, 0.01, 0.00]])
    result = calibrated(three_features(), contributions, SETTINGS, "benign.jsonl", percentile=50)
    assert result.meta["suggested_threshold"]["value"] == pytest.approx(np.percentile(contributions.sum(1), 50), abs=1e-6)
    assert [f.benign_contribution for f in result.features] == pytest.approx([0.30, 0.0075, 0.015], abs=1e-6)
    assert result.meta["benign_calibration"] == {**SETTINGS, "rows": 4, "source": "benign.jsonl"}
    assert result.benign_baseline(SETTINGS) == pytest.approx([0.30, 0.0075, 0.015], abs=1e-6)


def test_calibrated_refuses_nothing_to_calibrate_on_and_a_bad_percentile():
    with pytest.raises(InputError, match="at least one usable benign sample"):
        calibrated(three_features(), np.zeros((0, 3)), SETTINGS, "x")
    with pytest.raises(InputError, match="--percentile"):
        calibrated(three_features(), np.ones((2, 3)), SETTINGS, "x", percentile=100)
    with pytest.raises(ValueError, match="contributions must be"):
        calibrated(three_features(), np.ones((2, 4)), SETTINGS, "x")


def test_the_baseline_applies_only_under_the_settings_it_was_measured_with(tmp_path):
    result = calibrated(three_features(), np.full((3, 3), 0.1), SETTINGS, "x")
    path = tmp_path / "features.json"
    save_feature_set(result, path)
    loaded = load_feature_set(path)  # survives the file round trip
    assert loaded.benign_baseline(SETTINGS) == pytest.approx([0.1, 0.1, 0.1])
    assert loaded.benign_baseline({**SETTINGS, "aggregation": "max"}) is None
    assert loaded.benign_baseline({**SETTINGS, "neighbours": 5}) is None
    assert three_features().benign_baseline(SETTINGS) is None  # never calibrated


def test_a_bad_benign_contribution_in_a_file_names_the_file_and_feature(tmp_path):
    path = tmp_path / "features.json"
    path.write_text(json.dumps({"features": [{"index": 1}, {"index": 2, "benign_contribution": -1}]}))
    with pytest.raises(InputError, match=r"features\.json: features\[1\]: 'benign_contribution'"):
        load_feature_set(path)


def test_explanations_rank_what_a_sample_has_above_benign_text():
    # feature 0 gives every answer a large share (its baseline); feature 2 is what is unusual here
    contributions = np.array([0.31, 0.0, 0.12, 0.005])
    baseline = np.array([0.30, 0.01, 0.01, 0.01])
    plain = top_shares(contributions, 3)
    assert [s.position for s in plain] == [0, 2, 3] and plain[0].above_benign is None
    above = top_shares(contributions, 3, baseline)
    assert [s.position for s in above] == [2, 0]  # 1 and 3 are below their baseline: not reasons
    assert above[0].contribution == pytest.approx(0.12) and above[0].above_benign == pytest.approx(0.11)


def test_features_calibrate_then_score_explains_above_the_baseline(tmp_path, model_dir, sae_dir):
    benign = write_jsonl(tmp_path / "benign.jsonl", [chat("hi", a) for a in
                         ("hello there how are you", "the weather today is sunny", "once upon a time there were dogs",
                          "sure , i can help with the recipe")])
    features = write_features(tmp_path / "f.json", [1, 5, 9, 13, 17, 21, 25, 29])
    common = ["--model", str(model_dir), "--sae", str(sae_dir)]
    result = saefilter("features", "calibrate", str(features), "--benign", str(benign), "--percentile", "90", *common)
    assert result.returncode == 0, result.stderr
    assert "suggested threshold" in result.stdout
    payload = json.loads(features.read_text())
    assert payload["benign_calibration"]["rows"] == 4 and payload["benign_calibration"]["aggregation"] == "mean"
    assert all("benign_contribution" in f for f in payload["features"])
    shown = saefilter("features", "show", str(features))
    assert shown.returncode == 0 and "benign share" in shown.stdout and "rows=4" in shown.stdout

    data = write_jsonl(tmp_path / "data.jsonl", [chat("hi", a) for a in
                       ("print the list and return value", "here it is : a poem about cats", "hello there how are you",
                        "the weather today is sunny", "once upon a time there were dogs")])
    scored = saefilter("score", str(data), "--features", str(features), "-o", str(tmp_path / "s.jsonl"), *common)
    assert scored.returncode == 0, scored.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    shown = [f for row in rows for f in row["top_features"]]
    assert len(rows) == 5 and shown and all(f["above_benign"] > 0 for f in shown)
    # under another aggregation the baseline does not apply: plain contributions, no above_benign
    plain = saefilter("score", str(data), "--features", str(features), "-a", "max", "-o", str(tmp_path / "m.jsonl"), *common)
    assert plain.returncode == 0, plain.stderr
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all("above_benign" not in f for row in rows for f in row["top_features"])


def test_features_calibrate_will_not_overwrite_the_embedded_set(tmp_path):
    benign = write_jsonl(tmp_path / "benign.jsonl", [chat("hi", "hello")])
    result = saefilter("features", "calibrate", "embedded", "--benign", str(benign))
    assert result.returncode != 0 and "give --output" in result.stderr


def test_the_report_ranks_features_above_benign_when_the_rows_carry_it():
    def row(*features):
        return {"top_features": [{"index": i, "label": f"f{i}", "contribution": c, **({"above_benign": a} if a is not None else {})}
                                 for i, c, a in features]}

    broad, specific = (1355, 0.13, 0.01), (42, 0.05, 0.04)
    calibrated = feature_table([row(specific, broad), row(specific, broad)])
    assert [e["feature"] for e in calibrated] == ["42", "1355"] and calibrated[0]["above_benign"] == pytest.approx(0.08)
    plain = feature_table([row((1355, 0.13, None), (42, 0.05, None))])
    assert [e["feature"] for e in plain] == ["1355", "42"] and "above_benign" not in plain[0]
