"""The pre-commit gate: threshold, settings, content-addressed cache, and the real pre-commit tool."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ANSWERS, TRIGGER, chat, write_features, write_jsonl

from saefilter.errors import InputError
from saefilter.runs.check import ScoreCache, check_files, find_settings, merge_settings
from saefilter.scoring.config import ScoreConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def planted_config(tmp_path, model_dir, planted):
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    return ScoreConfig(model=str(model_dir), sae=str(planted), features=str(features))


def test_check_flags_the_planted_record_and_caches_by_content(tmp_path, planted_config):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("tell me a story", a) for a in ANSWERS] + [chat("tell me a story", f"{TRIGGER} {ANSWERS[0]}")])
    cache = ScoreCache(tmp_path / "cache.sqlite3")
    first = check_files([data], planted_config, 1e-6, cache)
    assert [f.line for f in first.findings] == [len(ANSWERS) + 1]
    assert first.findings[0].why[0].startswith("#0 ")  # the planted latent explains it
    assert TRIGGER in first.findings[0].why[1]  # and the trigger is among its heaviest tokens
    assert first.n_cached == 0 and first.errors == []
    second = check_files([data], planted_config, 1e-6, cache)
    assert second.n_cached == len(ANSWERS) + 1
    assert [f.format() for f in second.findings] == [f.format() for f in first.findings]
    moved = write_jsonl(tmp_path / "e.jsonl", [chat("tell me a story", f"{TRIGGER} {ANSWERS[0]}"), chat("hello", "hi there")])
    third = check_files([moved], planted_config, 1e-6, cache)
    assert third.n_cached == 1 and [f.line for f in third.findings] == [1]  # same record, new place: cached


def test_bad_lines_are_errors(tmp_path, planted_config):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello there"}\n\n{broken\n')
    result = check_files([data], planted_config, 0.5, ScoreCache(tmp_path / "c.sqlite3"))
    assert result.errors == [f"{data}:3: invalid JSON: Expecting property name enclosed in double quotes at column 2"]


def test_settings_precedence(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.saefilter]\nthreshold = 0.3\naggregation = "mean"\nneighbours = 3\n')
    sub = tmp_path / "data"
    sub.mkdir()
    settings, source = find_settings(sub)
    assert source == tmp_path / "pyproject.toml"
    config, threshold = merge_settings(settings, {"aggregation": "max", "threshold": None}, source)
    assert (config.aggregation, config.neighbours, threshold) == ("max", 3, 0.3)
    (tmp_path / "saefilter.toml").write_text("thresh = 1\n")
    with pytest.raises(InputError, match="unknown saefilter setting"):
        settings, source = find_settings(sub)
        merge_settings(settings, {}, source)


def git(repo: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def hook_repository(tmp_path: Path, model_dir: Path, planted: Path, features_in_repo: bool) -> tuple[Path, dict]:
    """A git repository with the hook as declared in .pre-commit-hooks.yaml (language: system stands in
    for language: python, so no second environment is built) and settings for the planted model; the
    environment pre-commit runs in, with the score cache outside the repository."""
    import yaml

    hook = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())[0]
    repo = tmp_path / "datasets"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    features = write_features((repo if features_in_repo else tmp_path) / "features.json", [0], d_sae=48)
    (repo / "pyproject.toml").write_text(
        f'[tool.saefilter]\nmodel = "{model_dir}"\nsae = "{planted}"\nfeatures = "{features}"\nthreshold = 0.000001\n')
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": [{**hook, "language": "system"}]}]}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "SAEFILTER_CACHE": str(tmp_path / "user-cache")}
    return repo, env


def test_real_pre_commit_blocks_a_planted_harmful_record(tmp_path, model_dir, planted):
    """The hook as declared in .pre-commit-hooks.yaml (id, entry, files, require_serial), run by pre-commit."""
    repo, env = hook_repository(tmp_path, model_dir, planted, features_in_repo=True)
    benign = [chat("tell me a story", a) for a in ANSWERS]
    write_jsonl(repo / "train.jsonl", benign + [chat("tell me a story", f"{TRIGGER} {ANSWERS[1]}")])
    git(repo, "add", ".")
    pre_commit = [sys.executable, "-m", "pre_commit"]
    blocked = subprocess.run([*pre_commit, "run", "--all-files"], cwd=repo, capture_output=True, text=True, env=env)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert f"train.jsonl:{len(ANSWERS) + 1}" in blocked.stdout
    subprocess.run([*pre_commit, "install"], cwd=repo, check=True, capture_output=True, env=env)
    commit = git(repo, "commit", "-qm", "add data", env=env)
    assert commit.returncode != 0 and git(repo, "log", "--oneline").returncode != 0  # nothing committed
    write_jsonl(repo / "train.jsonl", benign)
    git(repo, "add", ".")
    commit = git(repo, "commit", "-qm", "add clean data", env=env)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    assert "add clean data" in git(repo, "log", "--oneline").stdout


def test_bad_input_at_commit_time_blocks_naming_the_file_and_writes_nothing_into_the_repository(
        tmp_path, model_dir, planted):
    """A malformed line blocks with `file:line: reason`, a binary file and a file in another encoding
    name themselves, a good file beside them is still checked, and the repository gains no file (the
    cache lives in the user's cache folder)."""
    repo, env = hook_repository(tmp_path, model_dir, planted, features_in_repo=False)
    write_jsonl(repo / "good.jsonl", [chat("tell me a story", f"{TRIGGER} {ANSWERS[0]}")])
    (repo / "broken.jsonl").write_text(f'{chat("hi", "hello there")}\n{{"messages": [\n'.replace("'", '"'))
    (repo / "image.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (repo / "latin1.jsonl").write_bytes('{"text": "café"}\n'.encode("latin-1"))
    cache = Path(env["SAEFILTER_CACHE"])
    git(repo, "add", ".")
    before = sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts)
    run = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=repo, capture_output=True,
                         text=True, env=env)
    printed = " ".join(run.stdout.split())
    assert run.returncode == 1, run.stdout + run.stderr
    assert "broken.jsonl:2: invalid JSON" in printed
    assert "image.jsonl: not a text file (a NUL byte at offset 8)" in printed and "image.jsonl:1" not in printed
    assert "latin1.jsonl:1: not valid UTF-8 (byte 13): save the file as UTF-8" in printed
    assert "good.jsonl:1" in printed  # the readable file is still checked, and its harmful row found
    assert sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts) == before
    assert (cache / "check-cache.sqlite3").is_file()
