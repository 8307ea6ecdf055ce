"""Bad input never loses a line; a killed run resumes to the same bytes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ANSWERS, chat, write_features, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saefilter.errors import InputError
from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.scorer import Scorer

GOOD = [json.dumps(chat("tell me a story", a)).encode() for a in ANSWERS] + [b'{"text": "once upon a time there"}']
BAD = {
    b'{"messages": [oops': "invalid JSON",
    b"": "blank line",
    b"   ": "blank line",
    b'{"title": "x"}': "no recognisable text field",
    b'{"text": ""}': "empty text",
    b'{"text": "caf\xe9"}': "not valid UTF-8",
    b"[1, 2]": "expected a JSON object",
    json.dumps({"messages": [{"role": "user", "content": "hello"}]}).encode(): "no assistant turn",
}
LINE = st.one_of(st.sampled_from(GOOD), st.sampled_from(sorted(BAD)))


@pytest.fixture(scope="module")
def skip_scorer(tmp_path_factory, model_dir, sae_dir):
    features = write_features(tmp_path_factory.mktemp("f") / "f.json", [1, 5, 9])
    config = ScoreConfig(model=str(model_dir), sae=str(sae_dir), features=str(features), on_error="skip", chunk_records=3)
    return Scorer.load(config)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=12), trailing_newline=st.booleans())
def test_every_line_is_scored_or_skipped_with_a_reason(tmp_path_factory, skip_scorer, lines, trailing_newline):
    folder = tmp_path_factory.mktemp("prop")
    data = folder / "d.jsonl"
    content = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    data.write_bytes(content)
    physical = content.split(b"\n")
    lines = physical[:-1] if physical[-1] == b"" else physical  # a file ending in "\n" has no extra empty line
    if not lines:
        with pytest.raises(InputError, match="empty file"):
            score_file(data, skip_scorer.config, scorer=skip_scorer)
        return
    summary = score_file(data, skip_scorer.config, scorer=skip_scorer)
    scored = [json.loads(line) for line in summary.outputs.scores.read_text().splitlines()]
    skipped = [json.loads(line) for line in summary.outputs.skipped.read_text().splitlines()] if summary.outputs.skipped.exists() else []
    assert len(scored) + len(skipped) == len(lines) == summary.n_lines
    assert sorted(r["line"] for r in scored + skipped) == list(range(1, len(lines) + 1))
    for row in skipped:
        assert BAD[lines[row["line"] - 1]] in row["skipped"]
    for row in scored:
        assert lines[row["line"] - 1] in GOOD


def test_fail_mode_names_the_first_bad_line(tmp_path, skip_scorer):
    from dataclasses import replace

    data = tmp_path / "d.jsonl"
    data.write_bytes(GOOD[0] + b"\n\n" + b'{"title": "x"}\n' + GOOD[1] + b"\n")
    with pytest.raises(InputError, match=r"d.jsonl:3: no recognisable text field"):
        score_file(data, replace(skip_scorer.config, on_error="fail"), scorer=skip_scorer)
    assert not (tmp_path / "d.scores.jsonl").exists()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # both dtypes `--dtype auto` can pick on a CPU
def test_killed_run_resumes_to_a_byte_identical_score_file(tmp_path, model_dir, sae_dir, dtype):
    records = [chat("tell me a story", " ".join([a] * (1 + i % 7))) for i, a in enumerate(ANSWERS * 60)]
    data = write_jsonl(tmp_path / "d.jsonl", records)
    features = write_features(tmp_path / "f.json", [1, 5, 9])
    args = [sys.executable, "-m", "saefilter.cli", "score", str(data), "--model", str(model_dir), "--sae", str(sae_dir),
            "--features", str(features), "--checkpoint-every", "8", "--batch-size", "2", "--dtype", dtype]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    partial = tmp_path / ".d.scores.jsonl.partial"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and (not partial.exists() or partial.read_bytes().count(b"\n") < 40):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = partial.read_bytes().count(b"\n")
    assert 40 <= done < len(records), "the run was not interrupted mid-way"
    assert not (tmp_path / "d.scores.jsonl").exists()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    resumed_bytes = (tmp_path / "d.scores.jsonl").read_bytes()
    fresh = subprocess.run([*args, "-o", str(tmp_path / "fresh.scores.jsonl")], capture_output=True, text=True, env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert resumed_bytes == (tmp_path / "fresh.scores.jsonl").read_bytes()
    assert len(resumed_bytes.splitlines()) == len(records)


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path, skip_scorer):
    from dataclasses import replace

    from saefilter.outputs.score_files import ScoreOutputs

    data = write_jsonl(tmp_path / "d.jsonl", [chat("hello", "hi there")])
    outputs = ScoreOutputs.for_input(data)
    outputs.partial.write_text("")
    outputs.partial_state.write_text(json.dumps({"input": "sha256:other", "config": "x", "version": "0"}))
    with pytest.raises(InputError, match="another input or configuration"):
        score_file(data, replace(skip_scorer.config), resume=True, scorer=skip_scorer)
