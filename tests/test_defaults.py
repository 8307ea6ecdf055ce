"""The bundled default SAE and feature set belong together and match the embedded model's shape."""

import json

from saefilter.config import resolve_features_path, resolve_sae_spec
from saefilter.features import load_feature_set
from saefilter.sae import load_sae


def test_bundled_sae_and_features_fit_each_other_and_smollm2():
    sae = load_sae(resolve_sae_spec("embedded"))
    assert sae.d_in == 576  # SmolLM2-135M hidden size
    assert sae.hook.layer < 30 and sae.hook.name == "blocks.4.hook_resid_post"
    features = load_feature_set(resolve_features_path("embedded"))
    features.check_against(sae.d_sae)
    assert len(features.features) == 100
    assert all(f.label for f in features.features)
    threshold = features.meta["suggested_threshold"]["value"]
    assert 0 < threshold < 1


def test_model_card_states_the_recorded_sae_metrics():
    from saefilter.config import DEFAULTS_DIR

    metrics = json.loads((DEFAULTS_DIR / "sae" / "training_metrics.json").read_text())
    card = (DEFAULTS_DIR / "MODEL_CARD.md").read_text()
    assert f"{metrics['explained_variance']}" in card
    assert f"{metrics['train_tokens']:,}" in card
