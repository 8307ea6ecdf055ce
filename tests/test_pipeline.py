"""End to end on a tiny random Llama and sae-lens SAEs built here: ranking, formats, determinism."""

import json

import numpy as np
import pytest
from conftest import ANSWERS, TRIGGER, chat, write_features, write_jsonl

from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig


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
    first, _ = run(tmp_path, model_dir, sae_dir, features, records, name="a.jsonl", dtype="float32")
    second, _ = run(tmp_path, model_dir, sae_dir, features, records, name="b.jsonl", dtype="float32")
    batched, _ = run(tmp_path, model_dir, sae_dir, features, records, name="c.jsonl", batch_size=1, chunk_records=4, dtype="float32")
    reference = first.outputs.scores.read_bytes()
    assert second.outputs.scores.read_bytes() == reference
    assert batched.outputs.scores.read_bytes() == reference


def test_bfloat16_scores_repeat_exactly_and_move_little_with_batching(tmp_path, model_dir, sae_dir):
    """What README promises for bfloat16: byte-identical across runs with the same batch settings;
    across batch sizes (other padding, other kernels) close, not identical."""
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    records = [chat("tell me a story", a * (i % 3 + 1)) for i, a in enumerate(ANSWERS * 3)]
    first, rows = run(tmp_path, model_dir, sae_dir, features, records, name="a.jsonl", dtype="bfloat16")
    second, _ = run(tmp_path, model_dir, sae_dir, features, records, name="b.jsonl", dtype="bfloat16")
    _, batched = run(tmp_path, model_dir, sae_dir, features, records, name="c.jsonl", batch_size=1, chunk_records=4, dtype="bfloat16")
    _, float32 = run(tmp_path, model_dir, sae_dir, features, records, name="d.jsonl", dtype="float32")
    assert second.outputs.scores.read_bytes() == first.outputs.scores.read_bytes()
    scores, batched_scores, f32 = (np.array([r["score"] for r in rs]) for rs in (rows, batched, float32))
    print("max |batch 16 - batch 1|", np.abs(scores - batched_scores).max(), "max |bf16 - fp32|", np.abs(scores - f32).max(),
          "score range", np.ptp(f32))
    assert np.abs(scores - batched_scores).max() <= 0.02 * np.ptp(f32)
    assert np.abs(scores - f32).max() <= 0.05 * np.ptp(f32)


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


def test_the_scorers_batched_summaries_equal_the_reference_score(model_dir, sae_dir, tokenizer):
    """`FeatureEncoder.summaries` (what scoring runs) against `score_sample` on the dense activations."""
    import torch
    from reference_scoring import score_sample

    from saefilter.inputs.formats import to_conversation
    from saefilter.inputs.render import encode, render
    from saefilter.sae.encoder import FeatureEncoder
    from saefilter.sae.geometry import feature_proximity
    from saefilter.scoring.sample import score_summary
    from saefilter.scoring.scorer import load_backbone

    lm, sae = load_backbone(ScoreConfig(model=str(model_dir), sae=str(sae_dir)))
    encoder = FeatureEncoder(lm, sae)
    samples = [encode(render(to_conversation(chat("tell me a story", a)), tokenizer), tokenizer, 256) for a in ANSWERS]
    prox = feature_proximity(sae.sae.W_dec.detach().numpy(), [1, 5, 9], [1.0, 1.0, 1.0], 1, "sq-excess")
    for how in ("max", "mean"):
        summaries = encoder.summaries(samples, torch.from_numpy(prox.proximity), how)
        for token_acts, (aggregated, token_mass) in zip(encoder.token_features(samples), summaries, strict=True):
            expected = score_sample(token_acts, prox, how, 3)
            got = score_summary(aggregated, token_mass, prox, 3)
            assert got.score == pytest.approx(expected.score, rel=1e-6, abs=1e-9)
            assert [s.position for s in got.top_features] == [s.position for s in expected.top_features]
            np.testing.assert_allclose(token_mass, token_acts @ prox.proximity, rtol=1e-5, atol=1e-6)
