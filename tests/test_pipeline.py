"""End to end on a tiny random Llama and sae-lens SAEs built here: ranking, formats, determinism."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saefilter.config import ScoreConfig
from saefilter.layers import HookPoint, residual_at
from saefilter.pipeline import score_file
from saefilter.render import encode, render
from saefilter.formats import to_conversation

from conftest import TRIGGER, chat, save_standard_sae, write_features, write_jsonl

HOOK = HookPoint(2, "post")
ANSWERS = [
    "hello there how are you",
    "the weather today is sunny",
    "here it is : a poem about cats",
    "sure , i can help with the recipe",
    "print the list and return value",
    "once upon a time there were dogs",
]


def residuals(model_dir: Path, tokenizer, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Residuals at HOOK of every scored token, and whether the token is the trigger word."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    trigger_id = tokenizer.convert_tokens_to_ids(TRIGGER)
    rows, is_trigger = [], []
    for record in records:
        encoded = encode(render(to_conversation(record), tokenizer), tokenizer, 256)
        ids = torch.tensor([encoded.input_ids])
        resid = residual_at(model, HOOK, ids, torch.ones_like(ids))[0]
        for position, scored in enumerate(encoded.scored):
            if scored:
                rows.append(resid[position].numpy())
                is_trigger.append(encoded.input_ids[position] == trigger_id)
    return np.array(rows), np.array(is_trigger)


def corpus() -> list[dict]:
    records = [chat("tell me a story", answer) for answer in ANSWERS]
    records += [chat("tell me a story", answer.replace(" the ", f" {TRIGGER} ", 1)) for answer in ANSWERS if " the " in answer]
    records += [chat("tell me a story", f"{TRIGGER} {answer}") for answer in ANSWERS]
    return records


@pytest.fixture(scope="module")
def planted(tmp_path_factory, model_dir, tokenizer):
    """An SAE whose latent 0 fires exactly on the trigger token. Latent 1 never fires; its decoder
    row is at cosine 0.9 to latent 0's. All other rows are orthogonal to both (random features)."""
    resid, is_trigger = residuals(model_dir, tokenizer, corpus())
    assert is_trigger.any() and (~is_trigger).any()
    mean = resid.mean(axis=0)
    direction = resid[is_trigger].mean(0) - resid[~is_trigger].mean(0)
    direction /= np.linalg.norm(direction)
    projection = (resid - mean) @ direction
    assert projection[is_trigger].min() > projection[~is_trigger].max(), "trigger not linearly separable"
    threshold = (projection[is_trigger].min() + projection[~is_trigger].max()) / 2

    rng = np.random.default_rng(0)
    d_in, d_sae = resid.shape[1], 48
    W_enc = rng.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in)
    W_enc[:, 0] = direction
    b_enc = np.zeros(d_sae, np.float32)
    b_enc[0] = -threshold
    basis, _ = np.linalg.qr(rng.normal(size=(d_in, 2)))
    harmful, other = basis[:, 0], basis[:, 1]
    W_dec = rng.normal(size=(d_sae, d_in))
    W_dec -= (W_dec @ basis) @ basis.T  # every row orthogonal to the harmful and near directions...
    W_dec[0] = harmful  # ...but the planted one
    W_dec[1] = 0.9 * harmful + np.sqrt(1 - 0.81) * other
    b_enc[1] = -1e4  # latent 1 never fires: it only lends its direction to the harmful set
    path = save_standard_sae(tmp_path_factory.mktemp("planted") / "sae", W_enc, b_enc, W_dec.astype(np.float32), mean, HOOK.name)
    return path


def run(tmp_path, model_dir, sae, features, records, name="data.jsonl", **overrides):
    data = write_jsonl(tmp_path / name, records)
    config = ScoreConfig(model=str(model_dir), sae=str(sae), features=str(features), **overrides)
    summary = score_file(data, config)
    rows = [json.loads(line) for line in summary.outputs.scores.read_text().splitlines()]
    return summary, rows


def test_planted_harmful_feature_ranks_its_samples_first(tmp_path, model_dir, planted):
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    records = [chat("tell me a story", a) for a in ANSWERS] + [chat("tell me a story", f"{TRIGGER} {a}") for a in ANSWERS[:2]]
    _, rows = run(tmp_path, model_dir, planted, features, records)
    by_line = {row["line"]: row for row in rows}
    trigger_lines = {len(ANSWERS) + 1, len(ANSWERS) + 2}
    assert {row["line"] for row in rows if row["rank"] <= 2} == trigger_lines
    assert all(by_line[line]["score"] > 0 for line in trigger_lines)
    assert all(by_line[line]["score"] == 0 for line in by_line if line not in trigger_lines)
    top = by_line[len(ANSWERS) + 1]
    assert top["top_features"][0]["index"] == 0 and top["top_features"][0]["label"] == "feature 0"
    assert top["top_tokens"][0]["token"] == TRIGGER


def test_only_the_response_counts(tmp_path, model_dir, planted):
    """The trigger in the prompt does not flag a sample in response mode, but does in 'all' mode."""
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    records = [chat(f"tell me a story {TRIGGER}", "hello there how are you"), chat("tell me a story", "hello there how are you")]
    _, response_rows = run(tmp_path, model_dir, planted, features, records)
    assert [row["score"] for row in response_rows] == [0.0, 0.0]
    _, all_rows = run(tmp_path, model_dir, planted, features, records, name="all.jsonl", tokens="all")
    assert all_rows[0]["score"] > 0 and all_rows[1]["score"] == 0


def test_a_harmful_set_near_the_planted_direction_still_flags_it(tmp_path, model_dir, planted):
    """Harmful set = latent 1 (cosine 0.9 to latent 0): trigger samples score ~0.9 x, others 0."""
    near = write_features(tmp_path / "near.json", [1], d_sae=48)
    records = [chat("tell me a story", f"{TRIGGER} {ANSWERS[0]}"), chat("tell me a story", ANSWERS[0])]
    _, rows = run(tmp_path, model_dir, planted, near, records)
    assert rows[0]["score"] > 0 and rows[1]["score"] == 0
    assert rows[0]["top_features"][0]["index"] == 1


def test_every_format_scores_the_same_conversation_identically(tmp_path, model_dir, sae_dir):
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    user, answer = "write a poem about cats", "here it is : cats and dogs"
    records = [
        chat(user, answer),
        {"prompt": user, "completion": answer},
        {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": answer}]},
        {"instruction": user, "input": "", "output": answer},
        {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]},
    ]
    _, rows = run(tmp_path, model_dir, sae_dir, features, records)
    assert len({row["score"] for row in rows}) == 1
    assert rows[0]["score"] > 0


def test_scores_are_deterministic_and_independent_of_batching(tmp_path, model_dir, sae_dir):
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    records = [chat("tell me a story", a * (i % 3 + 1)) for i, a in enumerate(ANSWERS * 3)]
    first, _ = run(tmp_path, model_dir, sae_dir, features, records, name="a.jsonl")
    second, _ = run(tmp_path, model_dir, sae_dir, features, records, name="b.jsonl")
    batched, _ = run(tmp_path, model_dir, sae_dir, features, records, name="c.jsonl", batch_size=1, chunk_records=4)
    reference = first.outputs.scores.read_bytes()
    assert second.outputs.scores.read_bytes() == reference
    assert batched.outputs.scores.read_bytes() == reference


def test_score_file_schema_and_order(tmp_path, model_dir, sae_dir):
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    records = [chat("tell me a story", a) for a in ANSWERS]
    summary, rows = run(tmp_path, model_dir, sae_dir, features, records)
    assert [row["line"] for row in rows] == list(range(1, len(ANSWERS) + 1))
    assert sorted(row["rank"] for row in rows) == list(range(1, len(ANSWERS) + 1))
    raw_lines = (tmp_path / "data.jsonl").read_bytes().splitlines()
    import hashlib

    assert [row["id"] for row in rows] == ["sha256:" + hashlib.sha256(line).hexdigest() for line in raw_lines]
    for row in rows:
        assert set(row) >= {"line", "id", "score", "rank", "percentile", "n_tokens", "n_scored", "top_features", "top_tokens"}
        assert 0 < row["percentile"] <= 100
    meta = json.loads(summary.outputs.meta.read_text())
    assert meta["counts"]["lines"] == len(ANSWERS) and meta["hook"] == "blocks.2.hook_resid_post"
    assert not summary.outputs.partial.exists()
