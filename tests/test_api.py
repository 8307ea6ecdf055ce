"""The Python API runs what the CLI runs: same rows, same errors, no second code path."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import ANSWERS, TRIGGER, chat, write_features

import saefilter
from saefilter.cli import app
from saefilter.errors import InputError
from saefilter.inputs.records import table_line


def records_with_a_trigger() -> list[dict]:
    return [chat("tell me a story", a) for a in ANSWERS] + [chat("tell me a story", f"{TRIGGER} {ANSWERS[0]}")]


def write_compact_jsonl(path, records):
    """One record per line as the API hashes it (compact JSON), so ids agree with the file's."""
    path.write_bytes(b"".join(table_line(r) + b"\n" for r in records))
    return path


def test_import_saefilter_does_not_load_torch():
    code = "import sys, saefilter; saefilter.load_scorer; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_load_scorer_rows_equal_the_cli_score_file(tmp_path, model_dir, planted):
    from typer.testing import CliRunner

    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    records = records_with_a_trigger()
    data = write_compact_jsonl(tmp_path / "data.jsonl", records)
    result = CliRunner().invoke(app, ["score", str(data), "--model", str(model_dir), "--sae", str(planted), "--features", str(features), "-q"])
    assert result.exit_code == 0, result.output
    cli_rows = [json.loads(line) for line in (tmp_path / "data.scores.jsonl").read_text().splitlines()]

    scorer = saefilter.load_scorer(model=str(model_dir), sae=str(planted), features=str(features))
    api_rows = list(scorer.score(records))
    assert api_rows == cli_rows
    assert api_rows[-1]["rank"] == 1 and api_rows[-1]["top_tokens"][0]["token"] == TRIGGER
    streamed = list(scorer.stream(records))
    assert [{k: v for k, v in row.items() if k not in ("rank", "percentile")} for row in cli_rows] == streamed


def test_score_and_prune_file_match_the_cli(tmp_path, model_dir, planted):
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    data = write_compact_jsonl(tmp_path / "data.jsonl", records_with_a_trigger())
    summary = saefilter.score_file(data, model=str(model_dir), sae=str(planted), features=str(features), max_tokens=64)
    assert summary.n_scored == len(ANSWERS) + 1
    result = saefilter.prune_file(data, top_k=1, model=str(model_dir), sae=str(planted), features=str(features), max_tokens=64)
    removed = [json.loads(line) for line in result.removed.read_text().splitlines()]
    assert [row["line"] for row in removed] == [len(ANSWERS) + 1]
    assert result.summary["counts"]["kept"] == len(ANSWERS)


def test_api_reports_a_bad_record_as_the_cli_does(tmp_path, model_dir, planted):
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    records = [chat("hi", "hello"), {"prompt": "no completion here"}, chat("hi", "fine")]
    scorer = saefilter.load_scorer(model=str(model_dir), sae=str(planted), features=str(features))
    with pytest.raises(InputError, match=r"^<records>:2: "):
        list(scorer.score(records))
    skipping = saefilter.load_scorer(model=str(model_dir), sae=str(planted), features=str(features), on_error="skip")
    rows = list(skipping.score(records))
    assert [("skipped" in row, row["line"]) for row in rows] == [(False, 1), (True, 2), (False, 3)]
    scored = [row for row in rows if "skipped" not in row]
    by_score = sorted(scored, key=lambda row: (-row["score"], row["line"]))  # ties: the earlier line first
    assert [row["rank"] for row in by_score] == [1, 2]


def test_unknown_option_names_the_ones_that_exist():
    with pytest.raises(TypeError, match="max_tokens"):
        saefilter.load_scorer(max_token=5)
    with pytest.raises(InputError, match="--aggregation must be one of max, mean"):
        saefilter.score_file("x.jsonl", aggregation="median")


def test_save_to_disk_folder_and_csv_score_like_jsonl(tmp_path, model_dir, planted):
    datasets = pytest.importorskip("datasets")
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    texts = [f"{TRIGGER} {ANSWERS[0]}", ANSWERS[1], ANSWERS[2]]
    options = {"model": str(model_dir), "sae": str(planted), "features": str(features)}
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": texts, "n": [1, 2, 3]}).save_to_disk(str(folder))
    table = tmp_path / "table.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "n"])
        writer.writerows([[t, i] for i, t in enumerate(texts, start=1)])
    plain = write_compact_jsonl(tmp_path / "plain.jsonl", [{"text": t} for t in texts])
    scores = {}
    for path in (folder, table, plain):
        summary = saefilter.score_file(path, **options)
        scores[path.name] = [json.loads(line)["score"] for line in summary.outputs.scores.read_text().splitlines()]
        assert summary.n_lines == 3 and summary.outputs.scores.parent == tmp_path
    assert scores["ds"] == scores["table.csv"] == scores["plain.jsonl"]
    result = saefilter.prune_file(folder, top_k=1, **options)
    assert json.loads(result.removed.read_text().splitlines()[0])["record"] == {"text": texts[0], "n": 1}


def test_csv_line_accounting_names_a_bad_row(tmp_path, model_dir, planted):
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    table = tmp_path / "t.csv"
    # line 1 header; line 2 a record; lines 3-4 one record with a quoted newline; line 5 blank; line 6 too many fields
    table.write_text('text,source\nhello there,a\n"how are you\ni am fine",b\n\nhi,c,extra\nfine thanks,d\n')
    options = {"model": str(model_dir), "sae": str(planted), "features": str(features)}
    with pytest.raises(InputError, match=r"t\.csv:6: expected 2 CSV fields \(the header's\), got 3"):
        saefilter.score_file(table, **options)
    summary = saefilter.score_file(table, on_error="skip", **options)
    assert (summary.n_lines, summary.n_scored, summary.n_skipped, summary.n_blank) == (5, 3, 2, 1)
    lines = [json.loads(row)["line"] for row in summary.outputs.scores.read_text().splitlines()]
    skipped = [json.loads(row) for row in summary.outputs.skipped.read_text().splitlines()]
    assert lines == [2, 3, 7] and [row["line"] for row in skipped] == [5, 6]
    result = saefilter.prune_file(table, top_k=1, **options | {"on_error": "skip"})
    counts = result.summary["counts"]
    assert counts["kept"] + counts["removed"] + counts["unscorable"] == 5


def test_a_datasetdict_folder_asks_for_one_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(str(folder))
    with pytest.raises(InputError, match=r"a DatasetDict with splits train; pass one split's folder"):
        saefilter.score_file(folder)


def test_a_malformed_line_fails_before_the_model_weights_load(tmp_path, model_dir, planted):
    """--on-error fail reads and tokenises every line first: broken weights are never touched."""
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(chat("hi", "hello")) + "\n" + json.dumps(chat("hi", "fine")) + "\n{not json\n")
    options = {"model": str(broken), "sae": str(planted), "features": str(features)}
    with pytest.raises(InputError, match=r"d\.jsonl:3: invalid JSON"):
        saefilter.score_file(data, **options)
    data.write_text(json.dumps(chat("hi", "hello")) + "\n")
    with pytest.raises(InputError, match="could not load"):  # the same weights do fail once they are read
        saefilter.score_file(data, **options)


def test_the_cli_and_the_api_build_the_same_feature_set_byte_for_byte(tmp_path, model_dir, planted):
    """Both read their defaults from the same settings (features/settings.py): a default that drifts
    apart, such as the tokens a reference text is cut at, changes the selection and shows here."""
    from typer.testing import CliRunner

    long_tail = " ".join(["and the weather today is sunny"] * 120)  # past the 512 tokens a build reads
    harmful = [chat("tell me a story", f"{a} {long_tail} {TRIGGER}") for a in ANSWERS]
    benign = [chat("tell me a story", f"{a} {long_tail}") for a in ANSWERS]
    h, b = write_compact_jsonl(tmp_path / "h.jsonl", harmful), write_compact_jsonl(tmp_path / "b.jsonl", benign)
    cli_out, api_out = tmp_path / "cli.json", tmp_path / "api.json"
    result = CliRunner().invoke(app, ["features", "build", "-H", str(h), "-B", str(b), "--model", str(model_dir),
                                      "--sae", str(planted), "--top", "3", "--no-identity-filter", "-o", str(cli_out), "-q"])
    assert result.exit_code == 0, result.output
    saefilter.build_features(api_out, harmful=[h], benign=[b], top=3, model=str(model_dir), sae=str(planted),
                             identity_filter=False)
    assert api_out.read_bytes() == cli_out.read_bytes()
