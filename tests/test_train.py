"""SAE training path: activation collection at several hooks in one pass, sae-lens SAETrainer."""

import json

import numpy as np
import torch
from conftest import ANSWERS

from saefilter.formats import Conversation, Turn
from saefilter.hooks import HookPoint
from saefilter.layers import residual_at
from saefilter.model import load_model
from saefilter.sae import load_sae
from saefilter.train import SAETrainingSettings, collect_activations, train_topk_sae


def test_collect_then_train_gives_a_loadable_sae(tmp_path, model_dir):
    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    conversations = [Conversation(turns=(Turn("user", "tell me a story"), Turn("assistant", a))) for a in ANSWERS * 20]
    conversations += [Conversation(text="hello there how are you")]
    hooks = [HookPoint(1, "post"), HookPoint(3, "pre")]
    paths = collect_activations(lm, conversations, hooks, tmp_path / "acts", token_budget=600, max_tokens=64)
    acts = {name: np.load(path) for name, path in paths.items()}
    assert all(a.shape == (600, 32) and a.dtype == np.float16 for a in acts.values())
    # the first collected rows are the residuals of the first (shortest) sample, position 1 onwards
    assert not np.allclose(acts[hooks[0].name], acts[hooks[1].name])

    metrics = train_topk_sae(paths[hooks[0].name], hooks[0], tmp_path / "sae", SAETrainingSettings(d_sae=64, k=4, batch_size=100), "tiny")
    assert metrics.train_tokens + metrics.held_out_tokens == 600
    assert metrics.l0 <= 4.0 + 1e-6
    saved = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert saved["explained_variance"] == metrics.explained_variance
    loaded = load_sae(str(tmp_path / "sae"))
    assert loaded.hook == hooks[0] and loaded.d_sae == 64 and loaded.d_in == 32
    features = loaded.sae.encode(torch.from_numpy(acts[hooks[0].name][:10].astype(np.float32)))
    assert int((features > 0).sum(1).max()) <= 4


def test_collected_rows_are_the_residuals_of_every_position_but_the_first(tmp_path, model_dir):
    from saefilter.render import encode, render

    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    conversation = Conversation(turns=(Turn("user", "tell me a story"), Turn("assistant", ANSWERS[0])))
    encoded = encode(render(conversation, lm.tokenizer, "all"), lm.tokenizer, 64)
    hook = HookPoint(2, "post")
    paths = collect_activations(lm, [conversation], [hook], tmp_path / "acts", token_budget=10_000, max_tokens=64)
    ids = torch.tensor([encoded.input_ids])
    expected = residual_at(lm.model, hook, ids, torch.ones_like(ids))[0, 1:].numpy()
    np.testing.assert_allclose(np.load(paths[hook.name]).astype(np.float32), expected, rtol=1e-2, atol=1e-2)
