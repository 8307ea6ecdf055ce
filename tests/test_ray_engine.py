"""`score --engine ray` on a local Ray (2 CPUs): the local engine's score file, from JSONL, gzip and Parquet."""

import gzip
import json

import pytest

ray = pytest.importorskip("ray")

from conftest import ANSWERS, chat, write_features, write_jsonl

from saefilter.errors import InputError
from saefilter.inputs.records import iter_raw_lines
from saefilter.runs.pipeline import score_file
from saefilter.runs.ray_engine import RayOptions, score_with_ray, split_lines
from saefilter.scoring.config import ScoreConfig


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def config(tmp_path_factory, model_dir, sae_dir):
    features = write_features(tmp_path_factory.mktemp("f") / "f.json", [1, 5, 9])
    # chunk_records 4: several Ray blocks per actor and several actor batches, so ordering is exercised
    return ScoreConfig(model=str(model_dir), sae=str(sae_dir), features=str(features), chunk_records=4, on_error="skip")


def records():
    return [chat("tell me a story", " ".join([a] * (1 + i % 4))) for i, a in enumerate(ANSWERS * 3)]


def dataset(folder):
    data = write_jsonl(folder / "d.jsonl", records())
    with data.open("ab") as handle:
        handle.write(b"\n{broken\n" + json.dumps(chat("hi", "ok good")).encode() + b"\r\n")
    return data


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_scores(ray_file, local_file):
    ray_rows, local_rows = rows(ray_file), rows(local_file)
    assert [r["line"] for r in ray_rows] == [r["line"] for r in local_rows]
    for ours, theirs in zip(ray_rows, local_rows, strict=True):
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-6)
        assert {k: v for k, v in ours.items() if k not in ("score", "rank", "percentile")} == {
            k: v for k, v in theirs.items() if k not in ("score", "rank", "percentile")
        }


def test_ray_engine_writes_the_local_engines_score_file(tmp_path, local_ray, config):
    data = dataset(tmp_path)
    local = score_file(data, config, tmp_path / "local.scores.jsonl")
    summary = score_with_ray(str(data), config, tmp_path / "ray.scores.jsonl", RayOptions(actors=2))
    assert summary.n_lines == local.n_lines == len(records()) + 3
    assert (summary.n_scored, summary.n_skipped, summary.n_blank) == (local.n_scored, local.n_skipped, local.n_blank)
    assert_same_scores(summary.outputs.scores, local.outputs.scores)
    assert summary.outputs.skipped.read_bytes() == local.outputs.skipped.read_bytes()
    meta_ray, meta_local = json.loads(summary.outputs.meta.read_text()), json.loads(local.outputs.meta.read_text())
    assert {k: v for k, v in meta_ray.items() if k != "score_stats"} == {k: v for k, v in meta_local.items() if k != "score_stats"}


def test_ray_engine_reads_gzip_and_parquet(tmp_path, local_ray, config):
    import pandas as pd

    plain = write_jsonl(tmp_path / "p.jsonl", records())
    zipped = tmp_path / "z.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    local = score_file(plain, config, tmp_path / "p.scores.jsonl")
    assert_same_scores(score_with_ray(str(zipped), config).outputs.scores, local.outputs.scores)
    # a URI goes through pyarrow's filesystems (as s3:// or gs:// would); outputs land in the working folder
    by_uri = score_with_ray(plain.as_uri(), config, tmp_path / "uri.scores.jsonl")
    assert_same_scores(by_uri.outputs.scores, local.outputs.scores)
    assert json.loads(by_uri.outputs.meta.read_text())["input_sha256"] == json.loads(local.outputs.meta.read_text())["input_sha256"]

    parquet = tmp_path / "q.parquet"
    pd.DataFrame({"messages": [r["messages"] for r in records()], "source": "test"}).to_parquet(parquet, row_group_size=5)
    by_ray = score_with_ray(str(parquet), config, tmp_path / "q_ray.scores.jsonl")
    by_local = score_file(parquet, config, tmp_path / "q_local.scores.jsonl")
    assert by_ray.n_scored == by_local.n_scored == len(records())
    assert_same_scores(by_ray.outputs.scores, by_local.outputs.scores)


def test_ray_engine_stops_with_a_clear_message_before_or_at_the_problem(tmp_path, local_ray, config):
    from dataclasses import replace

    from conftest import random_sae

    data = dataset(tmp_path)
    with pytest.raises(InputError, match=r"d\.jsonl:20: invalid JSON"):
        score_with_ray(str(data), replace(config, on_error="fail"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # no partial or score file left behind
    with pytest.raises(InputError, match="no such file"):
        score_with_ray(str(tmp_path / "missing.jsonl"), config)
    # model problems are found in the driver from the model's config, before any actor loads weights
    too_deep = random_sae(tmp_path / "deep", hook="blocks.9.hook_resid_post")
    with pytest.raises(InputError, match="only 4 layers"):
        score_with_ray(str(data), replace(config, sae=str(too_deep)))
    with pytest.raises(InputError, match="could not load its config"):
        score_with_ray(str(data), replace(config, model=str(tmp_path)))


@pytest.mark.parametrize("content", [b"", b"a", b"a\n", b"a\r\nb", b"\n\nx\n\n", b"a\nbb\r\n\r\nccc\n" * 5, b"\r\n"])
def test_split_lines_matches_the_local_reader_across_block_boundaries(tmp_path, content):
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    pieces = iter([content[i : i + 3] for i in range(0, len(content), 3)])
    assert list(split_lines(lambda _size: next(pieces, b""))) == [raw for _, raw in iter_raw_lines(path)]


def test_ray_engine_options_from_the_command_line(tmp_path, model_dir, sae_dir):
    from test_cli import saefilter

    data = write_jsonl(tmp_path / "d.jsonl", [chat("tell me a story", a) for a in ANSWERS])
    args = ["--model", str(model_dir), "--sae", str(sae_dir), "--features", str(write_features(tmp_path / "f.json", [1, 5]))]
    refused = saefilter("score", str(data), "--engine", "ray", "--shard", "0/2", *args)
    assert refused.returncode == 2 and "local engine" in refused.stderr
    remote = saefilter("score", "s3://bucket/d.jsonl", *args)
    assert remote.returncode == 2 and "--engine ray" in remote.stderr
    result = saefilter("score", str(data), "--engine", "ray", *args)
    assert result.returncode == 0, result.stderr
    # in input-line order, as the local engine writes it (prune refuses a score file out of order)
    assert [r["line"] for r in rows(tmp_path / "d.scores.jsonl")] == list(range(1, len(ANSWERS) + 1))


def test_outputs_of_a_remote_input_default_to_the_working_folder():
    from pathlib import Path

    from saefilter.runs.ray_engine import local_name

    assert local_name("s3://bucket/dir/d.jsonl.gz") == Path("d.jsonl.gz")
    assert local_name("/data/d.parquet") == Path("/data/d.parquet")
