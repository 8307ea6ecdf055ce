"""SAE training path: activation collection at several hooks in one pass, sae-lens SAETrainer."""

import json

import numpy as np
import torch
from conftest import ANSWERS

from saefilter.inputs.formats import Conversation, Turn
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residual_at
from saefilter.model.loading import load_model
from saefilter.sae.loading import load_sae
from saefilter.sae.training import SAETrainingSettings, collect_activations, store_rows, train_topk_sae


def test_collect_then_train_gives_a_loadable_sae(tmp_path, model_dir):
    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    conversations = [Conversation(turns=(Turn("user", "tell me a story"), Turn("assistant", a))) for a in ANSWERS * 20]
    conversations += [Conversation(text="hello there how are you")]
    hooks = [HookPoint(1, "post"), HookPoint(3, "pre")]
    collect_activations(lm, conversations, hooks, tmp_path / "acts", token_budget=600, max_tokens=64, chunk_samples=8)
    acts = {h.name: np.asarray(store_rows(tmp_path / "acts", h.name)) for h in hooks}
    n = len(acts[hooks[0].name])
    assert 600 <= n < 600 + 8 * 64  # whole chunks: the budget is reached within the last one
    assert all(a.shape == (n, 32) and a.dtype == np.float16 for a in acts.values())
    # the first collected rows are the residuals of the first (shortest) sample, position 1 onwards
    assert not np.allclose(acts[hooks[0].name], acts[hooks[1].name])

    metrics = train_topk_sae(acts[hooks[0].name], hooks[0], tmp_path / "sae", SAETrainingSettings(d_sae=64, k=4, batch_size=100), "tiny")
    assert metrics.train_tokens + metrics.held_out_tokens == n
    loaded = load_sae(str(tmp_path / "sae"))  # what `score --sae DIR` loads: the hook travels with it
    assert loaded.hook == hooks[0] and loaded.d_sae == 64 and loaded.d_in == 32


def test_collected_rows_are_the_residuals_of_every_position_but_the_first(tmp_path, model_dir):
    from saefilter.inputs.render import encode, render

    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    conversation = Conversation(turns=(Turn("user", "tell me a story"), Turn("assistant", ANSWERS[0])))
    encoded = encode(render(conversation, lm.tokenizer, "all"), lm.tokenizer, 64)
    hook = HookPoint(2, "post")
    collect_activations(lm, [conversation], [hook], tmp_path / "acts", token_budget=10_000, max_tokens=64)
    ids = torch.tensor([encoded.input_ids])
    expected = residual_at(lm.model, hook, ids, torch.ones_like(ids))[0, 1:].numpy()
    np.testing.assert_allclose(np.asarray(store_rows(tmp_path / "acts", hook.name)).astype(np.float32), expected, rtol=1e-2, atol=1e-2)


def test_collection_resumes_where_it_stopped_and_matches_one_run(tmp_path, model_dir):
    """A run stopped part-way (budget reached, or killed mid-chunk) and resumed gives the rows of one uninterrupted run."""
    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    conversations = [Conversation(turns=(Turn("user", "tell me a story"), Turn("assistant", a))) for a in ANSWERS * 6]
    hook = HookPoint(1, "post")
    whole = tmp_path / "whole"
    collect_activations(lm, conversations, [hook], whole, token_budget=10**9, max_tokens=64, chunk_samples=5)
    parts = tmp_path / "parts"
    collect_activations(lm, conversations, [hook], parts, token_budget=50, max_tokens=64, chunk_samples=5)
    first = json.loads((parts / "store.json").read_text())
    assert 0 < first["chunks"] < len(conversations) // 5
    with (parts / f"{hook.name}.f16").open("ab") as handle:  # a chunk that was being written when the run died
        handle.write(b"\x00" * 1000)
    collect_activations(lm, conversations, [hook], parts, token_budget=10**9, max_tokens=64, chunk_samples=5)
    np.testing.assert_array_equal(np.asarray(store_rows(parts, hook.name)), np.asarray(store_rows(whole, hook.name)))
    import pytest

    with pytest.raises(ValueError, match="other settings"):
        collect_activations(lm, conversations, [HookPoint(2, "post")], parts, token_budget=10, max_tokens=64, chunk_samples=5)


def test_tokens_beyond_float16_are_left_out_of_every_hook_alike():
    from saefilter.sae.training import FLOAT16_MAX, fits_float16

    early = np.array([[1.0, -2.0], [3.0, 4.0], [0.5, 0.5]], dtype=np.float32)
    late = np.array([[1.0, 2.0 * FLOAT16_MAX], [3.0, 4.0], [-FLOAT16_MAX, 0.0]], dtype=np.float32)
    assert fits_float16([early, late]).tolist() == [False, True, True]  # token 0 overflows at the later hook only
    assert fits_float16([early]).tolist() == [True, True, True]


def test_rows_far_above_the_median_norm_are_left_out_of_training():
    from saefilter.sae.training import rows_within_norm

    acts = np.ones((10, 4), dtype=np.float16)  # norm 2 each
    acts[3] *= 300  # a "massive activation" token
    acts[7] *= 5
    kept, limit = rows_within_norm(acts, np.arange(10), factor=10.0, chunk=3)
    assert limit == 20.0 and kept.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert rows_within_norm(acts, np.array([3, 7]), factor=10.0)[0].tolist() == [7]


def test_training_recovers_planted_directions(tmp_path):
    """Rows that are sparse sums of 8 known directions (2 at a time, positive weights): the trained
    TopK SAE (k=2) must find each direction among its decoder rows and reconstruct held-out rows."""
    rng = np.random.default_rng(0)
    d_model, n_planted, n_rows = 32, 8, 6000
    planted = np.linalg.qr(rng.normal(size=(d_model, d_model)))[0][:n_planted]
    rows = np.zeros((n_rows, d_model), np.float32)
    for i in range(n_rows):
        chosen = rng.choice(n_planted, 2, replace=False)
        rows[i] = (rng.uniform(1, 3, 2)[:, None] * planted[chosen]).sum(0)
    settings = SAETrainingSettings(d_sae=16, k=2, batch_size=100, epochs=4, lr=3e-3)
    metrics = train_topk_sae(rows.astype(np.float16), HookPoint(1, "post"), tmp_path / "sae", settings, "planted")
    assert metrics.explained_variance > 0.85
    decoder = load_sae(str(tmp_path / "sae")).sae.W_dec.detach().float().numpy()
    decoder /= np.linalg.norm(decoder, axis=1, keepdims=True)
    best_cosine = (planted @ decoder.T).max(axis=1)
    assert best_cosine.min() > 0.85, best_cosine
