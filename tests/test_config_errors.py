"""Configuration errors fail before any forward pass, with a message that says what to change."""

import json

import pytest
from conftest import random_sae, write_features

from saefilter.errors import InputError
from saefilter.features.feature_set import load_feature_set
from saefilter.sae.loading import load_sae, split_registry_spec
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Scorer


def load(model_dir, sae, features, **overrides):
    return Scorer.load(ScoreConfig(model=str(model_dir), sae=str(sae), features=str(features), **overrides))


def test_feature_index_beyond_the_sae_width(tmp_path, model_dir, sae_dir):
    with pytest.raises(InputError, match=r"beyond the SAE width \(64 latents"):
        load(model_dir, sae_dir, write_features(tmp_path / "f.json", [3, 64]))


def test_feature_set_built_for_another_sae(tmp_path, model_dir, sae_dir):
    with pytest.raises(InputError, match="built for an SAE with 128 latents, this SAE has 64"):
        load(model_dir, sae_dir, write_features(tmp_path / "f.json", [3], d_sae=128))


def test_sae_width_does_not_match_the_model(tmp_path, model_dir):
    sae = random_sae(tmp_path / "wide", d_in=48)
    with pytest.raises(InputError, match="expects 48-dimensional inputs but the model's residual stream has 32"):
        load(model_dir, sae, write_features(tmp_path / "f.json", [3]))


def test_sae_layer_the_model_does_not_have(tmp_path, model_dir):
    sae = random_sae(tmp_path / "deep", hook="blocks.9.hook_resid_post")
    with pytest.raises(InputError, match=r"blocks.9.hook_resid_post but the model has only 4 layers \(0..3\)"):
        load(model_dir, sae, write_features(tmp_path / "f.json", [3]))


def test_unsupported_hook_point(tmp_path, model_dir):
    sae = random_sae(tmp_path / "attn", hook="blocks.1.hook_attn_out")
    with pytest.raises(InputError, match="unsupported SAE hook point"):
        load(model_dir, sae, write_features(tmp_path / "f.json", [3]))


def test_bad_feature_files(tmp_path):
    cases = {
        "missing.json": None,
        "notjson.json": "{",
        "empty.json": "[]",
        "negative.json": json.dumps([{"index": -1}]),
        "weight.json": json.dumps([{"index": 1, "weight": 0}]),
        "dupes.json": json.dumps([1, 2, 1]),
    }
    messages = {}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(InputError) as err:
            load_feature_set(tmp_path / name)
        messages[name] = str(err.value)
    assert "no such file" in messages["missing.json"]
    assert "not valid JSON" in messages["notjson.json"]
    assert "non-empty list" in messages["empty.json"]
    assert "non-negative integer" in messages["negative.json"]
    assert "positive number" in messages["weight.json"]
    assert "duplicate feature indices [1]" in messages["dupes.json"]
    assert load_feature_set(write_features(tmp_path / "ok.json", [4, 2])).indices == [4, 2]


def test_sae_folder_without_weights(tmp_path):
    (tmp_path / "cfg.json").write_text("{}")
    with pytest.raises(InputError, match="no sae_weights.safetensors"):
        load_sae(str(tmp_path))


def test_model_folder_that_is_not_a_model(tmp_path, sae_dir):
    with pytest.raises(InputError, match="not a model folder"):
        load(tmp_path, sae_dir, write_features(tmp_path / "f.json", [3]))


def test_registry_sae_offline_gives_a_clear_message():
    with pytest.raises(InputError, match="not in the local Hugging Face cache and the hub is unreachable"):
        load_sae("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    with pytest.raises(InputError, match="not found in release"):
        load_sae("gemma-scope-2b-pt-res-canonical/layer_99/width_16k/canonical")
    with pytest.raises(InputError, match="neither a local SAE folder nor RELEASE/SAE_ID"):
        load_sae("no-such-release/whatever")


def test_registry_spec_split_uses_the_longest_known_release():
    releases = {"a", "a/b"}
    assert split_registry_spec("a/b/c/d", releases) == ("a/b", "c/d")
    assert split_registry_spec("a/x", releases) == ("a", "x")
    assert split_registry_spec("z/x", releases) is None


def test_unknown_kernel_fails_before_the_model_loads(tmp_path, sae_dir):
    from saefilter.runs.evaluate import EvalRequest, evaluate_config

    features = write_features(tmp_path / "f.json", [3])
    with pytest.raises(InputError, match="--kernel must be one of linear, excess, sq-excess, got 'cubic'"):
        load(tmp_path / "no-model-here", sae_dir, features, kernel="cubic")
    config = ScoreConfig(model=str(tmp_path / "no-model-here"), sae=str(sae_dir), features=str(features))
    with pytest.raises(InputError, match="--kernels: unknown cubic"):
        evaluate_config(config, EvalRequest(kernels=["linear", "cubic"]))
