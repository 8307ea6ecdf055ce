"""prune: the invariant, byte-identical kept lines, the seeded random baseline, score-file reuse."""

import json

import pytest
from conftest import ANSWERS, chat, write_features, write_jsonl
from test_cli import saefilter

from saefilter.errors import InputError
from saefilter.outputs.prune import Cutoff, check_invariant, multiset_fingerprint, prune_dataset
from saefilter.runs.pipeline import current_scores, score_file
from saefilter.scoring.config import ScoreConfig


@pytest.fixture()
def scored(tmp_path, model_dir, sae_dir):
    records = [chat("tell me a story", a * (i % 3 + 1)) for i, a in enumerate(ANSWERS * 4)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    with data.open("ab") as handle:
        handle.write(b'{"text": "once upon a time"}')  # last line without a newline
    config = ScoreConfig(model=str(model_dir), sae=str(sae_dir), features=str(write_features(tmp_path / "f.json", [1, 5, 9])))
    summary = score_file(data, config)
    return data, summary.outputs.scores, config


def read_lines(path):
    return path.read_bytes().splitlines()


def test_kept_plus_removed_is_the_input_and_kept_lines_are_byte_identical(tmp_path, scored):
    data, scores, _ = scored
    result = prune_dataset(data, scores, Cutoff(top_k=7))
    input_lines = read_lines(data)
    kept = read_lines(result.pruned)
    removed = [json.loads(line) for line in read_lines(result.removed)]
    assert len(kept) + len(removed) == len(input_lines) == 25
    assert all(line in input_lines for line in kept)
    assert kept == [line for i, line in enumerate(input_lines, 1) if i not in {r["line"] for r in removed}]
    score_rows = [json.loads(line) for line in read_lines(scores)]
    top7 = {r["line"] for r in score_rows if r["rank"] <= 7}
    assert {r["line"] for r in removed} == top7
    assert all(r["record"] == json.loads(input_lines[r["line"] - 1]) for r in removed)
    summary = json.loads(result.report.read_text())
    assert summary["counts"] == {"input_lines": 25, "scored": 25, "unscorable": 0, "kept": 18, "removed": 7, "random_removed": 7}
    assert summary["score_stats"]["removed"]["min"] >= summary["score_stats"]["kept"]["max"]


def test_random_baseline_is_seeded_and_the_same_size(tmp_path, scored):
    data, scores, _ = scored
    first = prune_dataset(data, scores, Cutoff(fraction=0.5), seed=1, out_dir=tmp_path / "a")
    again = prune_dataset(data, scores, Cutoff(fraction=0.5), seed=1, out_dir=tmp_path / "b")
    other = prune_dataset(data, scores, Cutoff(fraction=0.5), seed=2, out_dir=tmp_path / "c")
    assert first.random.read_bytes() == again.random.read_bytes()
    assert first.random.read_bytes() != other.random.read_bytes()
    random_lines = read_lines(first.random)
    assert len(random_lines) == len(read_lines(first.pruned)) == 25 - 12
    input_lines = read_lines(data)
    remaining = iter(input_lines)
    assert all(any(line == candidate for candidate in remaining) for line in random_lines)  # a subsequence: input order


def test_threshold_cutoff_and_argument_checks(scored):
    data, scores, _ = scored
    rows = [json.loads(line) for line in read_lines(scores)]
    threshold = sorted(r["score"] for r in rows)[-5]
    result = prune_dataset(data, scores, Cutoff(threshold=threshold))
    assert result.summary["counts"]["removed"] == sum(r["score"] >= threshold for r in rows)
    with pytest.raises(InputError, match="exactly one of"):
        prune_dataset(data, scores, Cutoff(top_k=3, fraction=0.2))
    with pytest.raises(InputError, match="between 0 and 1"):
        prune_dataset(data, scores, Cutoff(fraction=1.5))


def test_stale_score_file_is_refused(scored):
    data, scores, _ = scored
    lines = read_lines(data)
    data.write_bytes(b"\n".join([lines[1], lines[0], *lines[2:]]) + b"\n")
    with pytest.raises(InputError, match="does not match"):
        prune_dataset(data, scores, Cutoff(top_k=2))


def test_score_file_sorted_by_hand_or_longer_than_the_input_is_refused(scored):
    data, scores, _ = scored
    rows = read_lines(scores)
    scores.write_bytes(b"\n".join(sorted(rows, key=lambda line: json.loads(line)["rank"])) + b"\n")
    with pytest.raises(InputError, match="not in input-line order"):
        prune_dataset(data, scores, Cutoff(top_k=2))
    extra = {**json.loads(rows[-1]), "line": 26, "rank": 26}
    scores.write_bytes(b"\n".join([*rows, json.dumps(extra).encode()]) + b"\n")
    with pytest.raises(InputError, match="line 26, past the end"):
        prune_dataset(data, scores, Cutoff(top_k=2))


def test_multiset_fingerprint_ignores_order_and_sees_any_change():
    ids = ["a", "b", "b", "c"]
    assert multiset_fingerprint(ids) == multiset_fingerprint(reversed(ids))
    assert multiset_fingerprint(ids) != multiset_fingerprint(["a", "b", "c", "c"])  # same count, other content
    assert multiset_fingerprint(ids) != multiset_fingerprint(["a", "b", "c"])  # a duplicate lost
    assert multiset_fingerprint([]) == (0, 0)


def test_invariant_check_catches_a_lost_or_altered_kept_line(scored):
    data, scores, _ = scored
    result = prune_dataset(data, scores, Cutoff(top_k=5))
    kept = read_lines(result.pruned)
    check_invariant(data, result.pruned, result.removed, set())
    result.pruned.write_bytes(b"\n".join(kept[1:]) + b"\n")
    with pytest.raises(RuntimeError, match="kept \\+ removed"):
        check_invariant(data, result.pruned, result.removed, set())
    result.pruned.write_bytes(b"\n".join([kept[1], *kept[1:]]) + b"\n")  # right count, one line duplicated
    with pytest.raises(RuntimeError, match="kept \\+ removed"):
        check_invariant(data, result.pruned, result.removed, set())


def test_score_file_reuse_and_invalidation(tmp_path, scored, model_dir, sae_dir):
    data, scores, config = scored
    assert current_scores(data, config) == scores
    from dataclasses import replace

    assert current_scores(data, replace(config, aggregation="max" if config.aggregation == "mean" else "mean")) is None
    assert current_scores(data, replace(config, batch_size=3)) == scores  # batching does not change scores
    other_features = write_features(tmp_path / "g.json", [2, 3])
    assert current_scores(data, replace(config, features=str(other_features))) is None
    with data.open("ab") as handle:
        handle.write(b"\n")
    assert current_scores(data, config) is None


def test_prune_cli_reuses_scores_then_rescores_on_change(tmp_path, scored, model_dir, sae_dir):
    data, _, config = scored
    args = ["--model", str(model_dir), "--sae", str(sae_dir), "--features", config.features]
    result = saefilter("prune", str(data), "--top-k", "3", *args)
    assert result.returncode == 0, result.stderr
    assert "reusing" in result.stderr
    other = "max" if config.aggregation == "mean" else "mean"
    result = saefilter("prune", str(data), "--top-k", "3", "--aggregation", other, *args)
    assert result.returncode == 0, result.stderr
    assert "reusing" not in result.stderr
    assert json.loads((tmp_path / "data.scores.meta.json").read_text())["aggregation"] == other
    result = saefilter("prune", str(data), "--top-k", "3", "--fraction", "0.1", *args)
    assert result.returncode == 2 and "exactly one of" in result.stderr
