"""Harmful directions beside harmful latents: the probe, its weight, proximity, file format, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import chat, write_features, write_jsonl
from test_cli import saefilter

from saefilter.errors import InputError
from saefilter.features.direction import direction_weight, probe_direction
from saefilter.features.feature_set import (
    FeatureSet,
    HarmfulDirection,
    HarmfulFeature,
    load_feature_set,
    merge_feature_sets,
    save_feature_set,
)
from saefilter.sae.geometry import clipped_cosines, feature_proximity
from saefilter.scoring.sample import sample_contributions


def test_the_probe_finds_a_planted_direction_among_noisy_ones():
    rng = np.random.default_rng(0)
    planted = rng.normal(size=24)
    planted /= np.linalg.norm(planted)
    x = rng.normal(size=(2000, 24)) * 3.0  # large variation in every direction
    y = (rng.random(2000) < 0.5).astype(float)
    x += np.outer(y, planted) * 6.0  # harmful rows shifted along the planted direction only
    found = probe_direction(x, y, c=1.0)
    assert np.linalg.norm(found) == pytest.approx(1.0)
    assert float(found @ planted) > 0.9
    with pytest.raises(ValueError, match="both harmful and benign"):
        probe_direction(x, np.ones(2000))


def test_the_weight_puts_both_parts_of_the_score_on_the_same_spread():
    latent_part = np.array([0.40, 0.42, 0.44, 0.46])  # std 0.0224
    direction_part = np.array([0.10, 0.11, 0.12, 0.13])  # std 0.0112
    assert direction_weight(latent_part, direction_part) == pytest.approx(2.0)
    assert direction_weight(latent_part, direction_part, ratio=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not vary"):
        direction_weight(latent_part, np.full(4, 0.2))


def test_a_direction_adds_clipped_cosine_times_weight_to_every_latents_proximity():
    decoder = np.eye(4, dtype=np.float32)  # latent i points along axis i
    direction = np.array([[1.0, 1.0, 0.0, -1.0]], np.float32)  # cos 1/sqrt(3) with axes 0 and 1, negative with 3
    plain = feature_proximity(decoder, [0], [1.0], 1, "linear")
    with_direction = feature_proximity(decoder, [0], [1.0], 1, "linear", direction, [3.0])
    added = with_direction.proximity - plain.proximity
    assert added == pytest.approx([3 / np.sqrt(3), 3 / np.sqrt(3), 0.0, 0.0], abs=1e-6)
    assert with_direction.k == 1 and with_direction.n_directions == 1
    assert clipped_cosines(decoder, direction)[:, 0] == pytest.approx([1 / np.sqrt(3), 1 / np.sqrt(3), 0, 0], abs=1e-6)
    # a sample's score splits over the latent (position 0) and the direction (position 1)
    acts = np.array([0.0, 2.0, 0.0, 1.0], np.float32)
    shares = sample_contributions(acts, with_direction, 2)
    assert shares.sum() == pytest.approx(float(acts @ with_direction.proximity / acts.sum()))
    assert shares[1] == pytest.approx(2.0 * 3 / np.sqrt(3) / 3.0)


def test_directions_survive_the_file_and_bad_ones_name_the_file(tmp_path):
    feature_set = FeatureSet((HarmfulFeature(2, "two"),), d_sae=8,
                             directions=(HarmfulDirection("probe", (0.5, -0.25, 1.0), 4.0, {"c": 0.03}),))
    path = tmp_path / "f.json"
    save_feature_set(feature_set, path)
    loaded = load_feature_set(path)
    assert loaded.directions[0].vector == pytest.approx((0.5, -0.25, 1.0)) and loaded.directions[0].weight == 4.0
    assert [c.label for c in loaded.components] == ["two", "probe"]
    with pytest.raises(InputError, match="3 dimensions, this SAE reads 5"):
        loaded.check_against(8, 5)
    with pytest.raises(InputError, match="has harmful directions"):  # never dropped silently
        merge_feature_sets([("a", loaded), ("b", FeatureSet((HarmfulFeature(3),), d_sae=8))])
    payload = json.loads(path.read_text())
    payload["directions"][0]["vector"] = [0, 0, 0]
    path.write_text(json.dumps(payload))
    with pytest.raises(InputError, match=r"f\.json: directions\[0\]: 'vector' is all zeros"):
        load_feature_set(path)


def test_features_add_direction_then_score_explains_with_it(tmp_path, model_dir, sae_dir):
    harmful = write_jsonl(tmp_path / "h.jsonl", [chat("tell me", f"kill them all with {w}") for w in
                                                 ("knives", "poison", "fire", "rope", "guns", "rocks")])
    benign = write_jsonl(tmp_path / "b.jsonl", [chat("tell me", f"bake them all with {w}") for w in
                                                ("flour", "sugar", "eggs", "butter", "milk", "salt")])
    features = write_features(tmp_path / "f.json", [1, 5, 9, 13])
    out = tmp_path / "fd.json"
    common = ["--model", str(model_dir), "--sae", str(sae_dir)]
    added = saefilter("features", "add-direction", str(features), "-H", str(harmful), "-B", str(benign), "-o", str(out), *common)
    assert added.returncode == 0, added.stderr
    feature_set = load_feature_set(out)
    assert len(feature_set.directions) == 1 and len(feature_set.directions[0].vector) == 32
    assert feature_set.directions[0].weight > 0 and feature_set.directions[0].stats["harmful_rows"] == 6
    shown = saefilter("features", "show", str(out))
    assert shown.returncode == 0 and "direction 0" in shown.stdout
    scored = saefilter("score", str(harmful), "--features", str(out), "-o", str(tmp_path / "s.jsonl"), *common)
    assert scored.returncode == 0, scored.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    explained = [f for row in rows for f in row["top_features"]]
    assert any(f.get("direction") == 0 for f in explained)  # the direction is reported like a feature
    assert all(("index" in f) != ("direction" in f) for f in explained)
    one_sided = saefilter("features", "add-direction", str(features), "-H", str(harmful), "-o", str(out), *common)
    assert one_sided.returncode == 2 and "give both --harmful and --benign" in one_sided.stderr


def test_features_build_with_direction_equals_build_then_add_direction(tmp_path, model_dir, sae_dir):
    """`features build --direction` fits the direction on the forward pass that selection made: the same
    latents and the same direction as `features build` then `features add-direction` on the same pairs."""
    harmful = write_jsonl(tmp_path / "h.jsonl", [chat(f"tell me {i}", f"kill them all with {w}") for i, w in
                                                 enumerate(("knives", "poison", "fire", "rope", "guns", "rocks"))])
    benign = write_jsonl(tmp_path / "b.jsonl", [chat(f"tell me {i}", f"bake them all with {w}") for i, w in
                                                enumerate(("flour", "sugar", "eggs", "butter", "milk", "salt"))])
    common = ["--model", str(model_dir), "--sae", str(sae_dir)]
    build = ["features", "build", "-H", str(harmful), "-B", str(benign), "--paired", "--top", "6", "--min-frequency", "0",
             "--max-benign-frequency", "1", "--no-identity-filter", *common]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert saefilter(*build, "--direction", "-o", str(one)).returncode == 0
    assert saefilter(*build, "-o", str(two)).returncode == 0
    added = saefilter("features", "add-direction", str(two), "-H", str(harmful), "-B", str(benign), *common)
    assert added.returncode == 0, added.stderr
    single, chained = load_feature_set(one), load_feature_set(two)
    assert [f.index for f in single.features] == [f.index for f in chained.features]
    (a,), (b,) = single.directions, chained.directions
    np.testing.assert_allclose(a.vector, b.vector, rtol=1e-5, atol=1e-7)
    assert a.weight == pytest.approx(b.weight, rel=1e-5)
    assert {k: v for k, v in a.stats.items() if k != "train_separation"} == {k: v for k, v in b.stats.items()
                                                                           if k != "train_separation"}
    merged = saefilter("features", "build", "--contrast", "answers", "--contrast", "code", "--direction", *common)
    assert merged.returncode == 2 and "--direction is fitted on one contrast, got 2" in merged.stderr


def test_hard_negatives_turn_the_probe_away_from_the_topic_harm_comes_with():
    """Harmful answers = benign + harm + a dark topic; hard negatives = benign + the same topic. The
    pairs alone cannot tell the topic from the harm, so the probe leans on both alike; with the hard
    negatives counted as benign it points mostly along the harm, the topic's share more than halved."""
    from saefilter.features.direction import fitted_direction

    rng = np.random.default_rng(1)
    d = 16
    harm, topic = np.zeros(d), np.zeros(d)
    harm[0], topic[1] = 1.0, 1.0
    benign = rng.normal(size=(200, d))
    harmful = rng.normal(size=(200, d)) + 2.0 * harm + 2.0 * topic
    hard = rng.normal(size=(200, d)) + 2.0 * topic
    acts = rng.uniform(0.1, 1.0, size=(200, 4))
    decoder = np.eye(4, d, dtype=np.float32)  # latents 0 and 1 point along the harm and the topic
    proximity = np.array([1.0, 0.5, 0.2, 0.0])
    pairs_only, _, stats = fitted_direction(harmful, benign, acts, proximity, decoder, c=1.0)
    with_hard, _, stats_hard = fitted_direction(harmful, benign, acts, proximity, decoder, c=1.0,
                                                hard_negative_residuals=hard)
    assert pairs_only @ topic > 0.5 and pairs_only @ harm > 0.5  # the pairs alone: as much topic as harm
    assert with_hard @ harm > 0.9 and with_hard @ topic < 0.5 * (pairs_only @ topic)
    assert stats["hard_negative_rows"] == 0 and stats_hard["hard_negative_rows"] == 200


def test_features_build_direction_takes_hard_negatives_and_says_so(tmp_path, model_dir, sae_dir):
    harmful = write_jsonl(tmp_path / "h.jsonl", [chat(f"tell me {i}", f"kill them all with {w}") for i, w in
                                                 enumerate(("knives", "poison", "fire", "rope", "guns", "rocks"))])
    benign = write_jsonl(tmp_path / "b.jsonl", [chat(f"tell me {i}", f"bake them all with {w}") for i, w in
                                                enumerate(("flour", "sugar", "eggs", "butter", "milk", "salt"))])
    dark = write_jsonl(tmp_path / "dark.jsonl", [chat("history", f"in the war they died by {w}") for w in ("fire", "guns")])
    common = ["--model", str(model_dir), "--sae", str(sae_dir)]
    build = ["features", "build", "-H", str(harmful), "-B", str(benign), "--paired", "--top", "6", "--min-frequency", "0",
             "--max-benign-frequency", "1", "--no-identity-filter", "--direction", *common]
    plain, hard = tmp_path / "plain.json", tmp_path / "hard.json"
    assert saefilter(*build, "-o", str(plain)).returncode == 0  # own files: no hard negatives unless asked
    made = saefilter(*build, "--hard-negatives", str(dark), "-o", str(hard))
    assert made.returncode == 0, made.stderr
    (without,), (with_dark,) = load_feature_set(plain).directions, load_feature_set(hard).directions
    assert without.stats["hard_negative_rows"] == 0 and without.stats["source"].endswith("hard negatives: none")
    assert with_dark.stats["hard_negative_rows"] == 2 and str(dark) in with_dark.stats["source"]
    assert not np.allclose(without.vector, with_dark.vector)
    added = saefilter("features", "add-direction", str(plain), "-H", str(harmful), "-B", str(benign),
                      "--hard-negatives", str(dark), "-o", str(tmp_path / "added.json"), *common)
    assert added.returncode == 0, added.stderr
    np.testing.assert_allclose(load_feature_set(tmp_path / "added.json").directions[0].vector, with_dark.vector,
                               rtol=1e-4, atol=1e-6)
    mixed = saefilter(*build, "--hard-negatives", "none", "--hard-negatives", str(dark))
    assert mixed.returncode == 2 and "does not combine" in mixed.stderr
    no_direction = saefilter("features", "build", "-H", str(harmful), "-B", str(benign), "--hard-negatives", str(dark), *common)
    assert no_direction.returncode == 2 and "give --direction too" in no_direction.stderr


def test_builtin_hard_negatives_are_the_tune_half_only():
    from saefilter.inputs.reference import builtin_hard_negative_texts, builtin_manifest

    texts = builtin_hard_negative_texts()
    source = Path(__file__).resolve().parents[1] / "data" / "matched" / "hard_negatives.jsonl"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    tune = [r["answer"] for r in rows if r["split"] == "tune"]
    assert [t.turns[-1].content for t in texts] == tune and len(tune) == 65
    entry = builtin_manifest()["hard_negatives"]
    assert entry["rows"] == 65 and entry["sources"][0]["licence"].startswith("MIT")
