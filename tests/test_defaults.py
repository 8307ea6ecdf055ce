"""The SAEs and feature sets shipped in the package belong together and match their models' shapes."""

import json
from pathlib import Path

import pytest
import torch
from conftest import EMBEDDED, QWEN
from safetensors.torch import load_file

from saefilter.features.feature_set import load_feature_set
from saefilter.features.function_words import is_function_word
from saefilter.model.named import NAMED_MODELS, find_named_model
from saefilter.sae.loading import load_sae
from saefilter.scoring.config import resolve_features_path, resolve_sae_spec, shipped_dir

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


SHIPPED = [m for m in NAMED_MODELS if m.shipped is not None]
MAX_SHIPPED_BYTES = 30 * 2**20  # at most about 30 MB of weights per shipped model


@pytest.mark.parametrize("named", SHIPPED, ids=lambda m: m.name)
def test_every_shipped_sae_and_feature_set_fit_each_other_and_their_model(named):
    """What `--model NAME` with no --sae/--features loads: an SAE of that model's width at one of its
    layers, float16 on disk, and a feature set selected for that SAE by the shipped selection."""
    folder = shipped_dir(named.name)
    weights = folder / "sae" / "sae_weights.safetensors"
    assert weights.stat().st_size <= MAX_SHIPPED_BYTES
    assert {t.dtype for t in load_file(weights).values()} == {torch.float16}
    sae = load_sae(resolve_sae_spec("embedded", named.name))
    assert sae.d_in == named.d_model and sae.hook.layer < named.n_layers
    features = load_feature_set(resolve_features_path("embedded", named.name))
    features.check_against(sae.d_sae, sae.d_in)
    assert features.meta["selection"]["hook"] == sae.hook.name
    assert find_named_model(features.meta["selection"]["model"]) == named  # selected on this model's activations
    # one harmful direction, the probe of the same pairs at the SAE's layer
    assert len(features.directions) == 1 and len(features.directions[0].vector) == sae.d_in
    assert features.directions[0].stats["hook"] == sae.hook.name and features.directions[0].weight > 0
    assert all(f.label for f in features.features)
    selection = features.meta["selection"]
    # selected from the paired built-in answers contrast, token-controlled, with the identity filter on
    assert selection["contrast"] == "answers" and selection["paired"] is True
    assert selection["ranking"].startswith("paired t of per-sample max excess")
    assert selection["identity_latents_excluded"] > 0
    threshold = features.meta["suggested_threshold"]["value"]
    # the direction's proximity adds up to its weight on top of the latents': scores are not bounded by 1
    assert 0 < threshold < 1 + features.directions[0].weight and "aggregation=mean" in features.meta["suggested_threshold"]["how"]


@pytest.mark.parametrize("named", SHIPPED, ids=lambda m: m.name)
def test_every_model_card_states_the_recorded_sae_metrics(named):
    folder = shipped_dir(named.name)
    metrics = json.loads((folder / "sae" / "training_metrics.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"{metrics['explained_variance']}" in card
    assert f"{metrics['train_tokens']:,}" in card


def test_the_default_model_ships_the_layer_16_set():
    sae = load_sae(resolve_sae_spec("embedded"))
    assert sae.d_in == 576 and sae.hook.name == "blocks.16.hook_resid_post"  # SmolLM2-135M, layer 16 of 30
    features = load_feature_set(resolve_features_path("embedded"))
    assert len(features.features) == 200
    # since 2026-12-03: the direction's probe counted the built-in hard negatives as benign, labels name kinds of
    # harm, and the check threshold comes from benign chat answers that no benchmark uses
    (direction,) = features.directions
    assert direction.stats["hard_negative_rows"] == 65 and "hard negatives: built-in" in direction.stats["source"]
    kinds = {"violence", "self-harm", "medical", "financial", "fraud", "hate", "ai-power", "ai-deception", "crime",
             "cruelty", "dangerous", "extremism"}
    named = [f for f in features.features if f.stats.get("kinds")]
    assert len(named) >= 150 and all(f.label.split(",")[0].split(":")[0] in kinds for f in named)
    assert "calibration_chat.jsonl" in features.meta["suggested_threshold"]["how"]
    # since 2026-12-03: latents peaking mostly on function words were passed over, and no label's words are all such
    passed_over = features.meta["selection"]["function_word_latents_passed_over"]
    assert passed_over and not set(passed_over) & set(features.indices)
    assert not any(all(is_function_word(w) for w in f.stats["peak_words"].strip("'").split("', '"))
                   for f in features.features if f.stats.get("peak_words"))


MIXED_HARMFUL_LINES = {3, 7, 10, 14, 16, 19}  # the plainly harmful samples of data/samples/mixed_chat.jsonl


def mixed_chat_ranking(tmp_path, model: str | None = None) -> list[dict]:
    from saefilter.runs.pipeline import score_file
    from saefilter.scoring.config import ScoreConfig

    out = tmp_path / "mixed_chat.scores.jsonl"
    config = ScoreConfig() if model is None else ScoreConfig(model=model)
    summary = score_file(SAMPLES / "mixed_chat.jsonl", config, out)
    assert summary.n_scored == 20
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted(rows, key=lambda row: -row["score"])


@EMBEDDED
def test_the_embedded_default_ranks_the_plainly_harmful_samples_near_the_top(tmp_path):
    """The acceptance check of the embedded default, on the real model, SAE and feature set: all six
    plainly harmful samples of mixed_chat.jsonl rank in its top 7 of 20 (one benign row, a haiku, ranks
    third; BENCHMARKS.md), each is explained first by the harmful direction, and most of their top
    tokens are harmful words, not structure."""
    ranking = mixed_chat_ranking(tmp_path)
    harmful = [rank for rank, row in enumerate(ranking, 1) if row["line"] in MIXED_HARMFUL_LINES]
    assert max(harmful) <= 7, harmful
    leading = [row["top_features"][0] for row in ranking if row["line"] in MIXED_HARMFUL_LINES]
    assert all(f.get("direction") == 0 and f["above_benign"] > 0 for f in leading), leading
    words = ("hack", "steal", "poison", "explosive", "stupid", "sabotage", "hurt", "false")
    explained = [row for row in ranking if row["line"] in MIXED_HARMFUL_LINES
                 and any(word in " ".join(t["token"] for t in row["top_tokens"]) for word in words)]
    assert len(explained) >= 4, [row["top_tokens"] for row in ranking if row["line"] in MIXED_HARMFUL_LINES]


@EMBEDDED
@pytest.mark.xfail(strict=True, reason="target not met: a benign haiku ranks third, above four harmful rows (0.985 vs 0.981 for the next harmful one)")
def test_every_plainly_harmful_sample_ranks_above_every_benign_one(tmp_path):
    ranking = mixed_chat_ranking(tmp_path)
    harmful = [rank for rank, row in enumerate(ranking, 1) if row["line"] in MIXED_HARMFUL_LINES]
    assert max(harmful) == len(MIXED_HARMFUL_LINES)


@QWEN
def test_the_qwen_set_ranks_every_plainly_harmful_sample_above_every_benign_one(tmp_path):
    """The shipped Qwen2.5-Coder SAE and set (861k-token SAE, the function-word-filter selection) meet the mixed_chat
    target the default misses: the six harmful rows first, each above the set's suggested threshold,
    and no benign row above it (docs/log.md, 2026-12-03, "the 861k Qwen SAE ships")."""
    ranking = mixed_chat_ranking(tmp_path, "qwen2.5-coder-1.5b-instruct")
    harmful = [rank for rank, row in enumerate(ranking, 1) if row["line"] in MIXED_HARMFUL_LINES]
    assert harmful == [1, 2, 3, 4, 5, 6], harmful
    threshold = load_feature_set(resolve_features_path("embedded", "qwen2.5-coder-1.5b-instruct")).meta[
        "suggested_threshold"]["value"]
    flagged = {row["line"] for row in ranking if row["score"] > threshold}
    assert flagged == MIXED_HARMFUL_LINES, flagged


def test_the_embedded_set_is_calibrated_for_the_default_scoring_settings():
    """So `saefilter score` with no flags explains rows above the benign baseline, and its suggested
    threshold was measured with the aggregation a user gets."""
    from saefilter.scoring.config import DEFAULT_KERNEL, ScoreConfig

    feature_set = load_feature_set(resolve_features_path("embedded"))
    settings = {"aggregation": ScoreConfig.aggregation, "neighbours": ScoreConfig.neighbours,
                "kernel": DEFAULT_KERNEL, "tokens": ScoreConfig.tokens}
    baseline = feature_set.benign_baseline(settings)
    assert baseline is not None and len(baseline) == len(feature_set.components)
    assert f"aggregation={ScoreConfig.aggregation}" in feature_set.meta["suggested_threshold"]["how"]
