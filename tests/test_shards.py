"""Sharded scoring: merged shards equal the single-process file byte for byte; bad merges are refused."""

import json

import pytest
from conftest import ANSWERS, chat, write_features, write_jsonl

from saefilter.errors import InputError
from saefilter.outputs.score_files import Shard
from saefilter.runs.merge import find_shards, merge_shards
from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Scorer


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def scorer(request, tmp_path_factory, model_dir, sae_dir):
    """Both dtypes `--dtype auto` can choose on a CPU (bfloat16 for the embedded model where native)."""
    features = write_features(tmp_path_factory.mktemp("f") / "f.json", [1, 5, 9])
    return Scorer.load(ScoreConfig(model=str(model_dir), sae=str(sae_dir), features=str(features), chunk_records=4,
                                   on_error="skip", dtype=request.param))


def dataset(folder):
    data = write_jsonl(folder / "d.jsonl", [chat("tell me a story", " ".join([a] * (1 + i % 4))) for i, a in enumerate(ANSWERS * 4)])
    with data.open("ab") as handle:
        handle.write(b"\n{broken\n")  # a blank and a bad line, so skipped rows are sharded too
    return data


@pytest.mark.parametrize("n", [1, 3, 5])
def test_merged_shards_equal_the_single_process_output(tmp_path, scorer, n):
    data = dataset(tmp_path)
    single = score_file(data, scorer.config, tmp_path / "single.scores.jsonl", scorer=scorer)
    for i in range(n):
        path = score_file(data, scorer.config, scorer=scorer, shard=Shard(i, n, scorer.config.chunk_records))
        assert path.name == f"d.scores.shard-{i}-of-{n}.jsonl"
    merged = merge_shards(data, find_shards(data))
    assert merged.outputs.scores.read_bytes() == single.outputs.scores.read_bytes()
    assert merged.outputs.skipped.read_bytes() == single.outputs.skipped.read_bytes()
    meta_single = json.loads(single.outputs.meta.read_text())
    meta_merged = json.loads(merged.outputs.meta.read_text())
    assert meta_merged == meta_single


def test_merge_refuses_missing_foreign_and_incomplete_shards(tmp_path, scorer):
    data = dataset(tmp_path)
    paths = [score_file(data, scorer.config, scorer=scorer, shard=Shard(i, 3, 4)) for i in range(3)]
    with pytest.raises(InputError, match="missing shard"):
        merge_shards(data, paths[:2])
    other_block = score_file(data, scorer.config, scorer=scorer, shard=Shard(2, 3, 2))
    with pytest.raises(InputError, match="cut in different blocks"):
        merge_shards(data, [*paths[:2], other_block])
    paths[2] = score_file(data, scorer.config, scorer=scorer, shard=Shard(2, 3, 4))
    lines = paths[1].read_text().splitlines()
    paths[1].write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match="incomplete shard"):
        merge_shards(data, paths)
    with data.open("a") as handle:
        handle.write(json.dumps(chat("hello", "hi there")) + "\n")
    with pytest.raises(InputError, match="different version"):
        merge_shards(data, paths)
    with pytest.raises(InputError, match="no shard files"):
        merge_shards(data, [])


def test_shard_parsing():
    assert Shard.parse("2/8") == Shard(2, 8) and Shard.parse("2/8", 512) == Shard(2, 8, 512)
    assert Shard(2, 8).owns(2) and not Shard(2, 8).owns(3)  # record ordinals, counted from 0
    assert [o for o in range(12) if Shard(1, 3, 2).owns(o)] == [2, 3, 8, 9]  # blocks of 2, dealt round-robin
    assert sorted(o for i in range(3) for o in range(10) if Shard(i, 3, 4).owns(o)) == list(range(10))
    for bad in ("8/8", "a/b", "3"):
        with pytest.raises(InputError):
            Shard.parse(bad)


def test_shard_and_merge_from_the_command_line(tmp_path, model_dir, sae_dir):
    from test_cli import saefilter

    data = write_jsonl(tmp_path / "d.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    args = ["--model", str(model_dir), "--sae", str(sae_dir), "--features", str(write_features(tmp_path / "f.json", [1, 5]))]
    for shard in ("0/2", "1/2"):
        result = saefilter("score", str(data), "--shard", shard, *args)
        assert result.returncode == 0, result.stderr
        assert "saefilter merge" in result.stdout
    merged = saefilter("merge", str(data))
    assert merged.returncode == 0, merged.stderr
    rows = [json.loads(line) for line in (tmp_path / "d.scores.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, len(ANSWERS) + 1))
    assert saefilter("score", str(data), "--shard", "2/2", *args).returncode == 2
