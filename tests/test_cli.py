"""The command line as a user meets it: real subprocesses, exit codes and messages."""

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import chat, write_features, write_jsonl

from saefilter.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def saefilter(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "saefilter.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.fixture()
def tiny_args(tmp_path, model_dir, sae_dir):
    return ["--model", str(model_dir), "--sae", str(sae_dir), "--features", str(write_features(tmp_path / "f.json", [1, 5, 9]))]


def test_score_end_to_end_on_a_sample_file(tmp_path, tiny_args):
    data = tmp_path / "mixed_chat.jsonl"
    data.write_bytes((SAMPLES / "mixed_chat.jsonl").read_bytes())
    result = saefilter("score", str(data), *tiny_args)
    assert result.returncode == 0, result.stderr
    scores = tmp_path / "mixed_chat.scores.jsonl"
    assert str(scores) in result.stdout.replace("\n", "")
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 20 and sorted(r["rank"] for r in rows) == list(range(1, 21))
    assert data.read_bytes() == (SAMPLES / "mixed_chat.jsonl").read_bytes()  # input untouched


def test_bad_line_fails_before_scoring_with_file_and_line(tmp_path, tiny_args):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("hello", "hi there")])
    with data.open("a") as handle:
        handle.write('{"messages": [oops\n')
    result = saefilter("score", str(data), *tiny_args)
    assert result.returncode == 2
    assert f"{data}:2: invalid JSON" in result.stderr.replace("\n", "")
    assert not (tmp_path / "d.scores.jsonl").exists()


def test_missing_input_and_bad_choice(tmp_path, tiny_args):
    result = saefilter("score", str(tmp_path / "nope.jsonl"), *tiny_args)
    assert result.returncode == 2 and "no such file" in result.stderr
    result = saefilter("score", str(tmp_path / "v[ray].jsonl"), *tiny_args)  # brackets are not markup
    assert result.returncode == 2 and "v[ray].jsonl: no such file" in " ".join(result.stderr.split())
    result = saefilter("score", str(tmp_path), *tiny_args)
    assert result.returncode == 2 and "is a directory without state.json" in result.stderr
    result = saefilter("score", str(tmp_path / "x.jsonl"), "--aggregation", "median", *tiny_args)
    assert result.returncode == 2 and "--aggregation must be one of max, mean" in result.stderr


def test_every_option_of_every_command_is_explained():
    command = typer.main.get_command(app)
    subcommands = getattr(command, "commands", {"score": command})
    undocumented = [
        f"{name} {param.name}"
        for name, sub in subcommands.items()
        for group in ([sub] + list(getattr(sub, "commands", {}).values()))
        for param in group.params
        if not getattr(param, "help", None) and param.param_type_name == "option" and param.name != "help"
    ]
    assert undocumented == []


def test_command_help_reads_as_paragraphs_in_80_columns():
    """Docstrings wrapped in the source must not print as ragged lines: rich keeps single newlines."""
    command = typer.main.get_command(app)
    groups = [command] + [sub for sub in command.commands.values() if hasattr(sub, "commands")]
    helps = {name: sub.help for group in groups for name, sub in group.commands.items() if not hasattr(sub, "commands")}
    assert {"score", "prune", "explain", "add-direction"} <= helps.keys()
    ragged = [name for name, text in helps.items() if any("\n" in paragraph for paragraph in text.split("\n\n"))]
    assert ragged == []
    listing = subprocess.run([sys.executable, "-m", "saefilter.cli", "--help"], capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "80"}, timeout=120).stdout
    assert max(len(line) for line in listing.splitlines()) <= 80
    box = [line[2:-2] for line in listing.split("Commands")[1].splitlines()[1:] if line.startswith("│")]
    column = re.match(r"\S+\s+", box[0]).end()  # where the descriptions start
    continuations = [(previous, line) for previous, line in itertools.pairwise(box) if not line[:column].strip()]
    assert continuations  # some descriptions wrap at 80 columns; each must wrap only where a word did not fit
    for previous, line in continuations:
        assert len(previous.rstrip()) + 1 + len(line.split()[0]) > len(line), (previous, line)


def test_quiet_prints_nothing_but_verbose_and_errors_do(tmp_path, tiny_args):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("hello", "hi there"), chat("hello", "how are you")])
    quiet = saefilter("score", str(data), *tiny_args, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    loud = saefilter("prune", str(data), "--fraction", "0.5", *tiny_args)
    assert loud.returncode == 0, loud.stderr
    text = " ".join(loud.stdout.split())
    assert "cut-off: the top 0.5 of scores (50%)" in text and "{" not in text  # words, not a Python dict
    both = saefilter("score", str(data), *tiny_args, "-q", "-v")
    assert both.returncode == 2 and "--quiet and --verbose contradict each other" in both.stderr
    bad = saefilter("score", str(tmp_path / "nope.jsonl"), *tiny_args, "--quiet")
    assert bad.returncode == 2 and "no such file" in bad.stderr  # errors show even when quiet


def test_every_command_takes_quiet_and_verbose():
    command = typer.main.get_command(app)
    missing = [
        f"{name} {sub_name}".strip()
        for name, sub in command.commands.items()
        for sub_name, leaf in (getattr(sub, "commands", None) or {"": sub}).items()
        if not {"quiet", "verbose"} <= {p.name for p in leaf.params}
    ]
    assert missing == []


def test_features_contrasts_lists_every_builtin_contrast_with_its_licences():
    from saefilter.features.settings import BUILTIN_CONTRASTS

    result = saefilter("features", "contrasts")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for name in BUILTIN_CONTRASTS:
        assert name in text
    assert "CDLA-Permissive-2.0" in text and "MIT" in text and "licence notices" in text
