"""The HTML report: self-contained, showing the flagged samples with their features and tokens."""

import re

from conftest import ANSWERS, TRIGGER, chat, write_features, write_jsonl

from saefilter.outputs.report import highlight, write_report
from saefilter.runs.pipeline import score_file
from saefilter.scoring.config import ScoreConfig


def test_report_shows_flagged_samples_and_is_self_contained(tmp_path, model_dir, planted):
    records = [chat("tell me a story", a) for a in ANSWERS] + [chat("tell me a story", f"{TRIGGER} {ANSWERS[2]}")]
    data = write_jsonl(tmp_path / "d.jsonl", records)
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    summary = score_file(data, ScoreConfig(model=str(model_dir), sae=str(planted), features=str(features)))
    html_path, png_path, info = write_report(summary.outputs.scores, tmp_path / "r.html", top_n=3)
    page = html_path.read_text()
    assert png_path.read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in page
    assert not re.search(r"(src|href)=['\"]https?://", page)  # nothing fetched when viewed
    first_row = page.split("<th>scored text")[1].split("</tr>")[1]
    assert f"<td>{len(records)}</td>" in first_row  # rank 1 is the planted line
    assert f">{TRIGGER}</mark>" in first_row
    assert "feature 0" in first_row
    assert info["top_features"][0]["feature"] == "0"


def test_highlight_escapes_html():
    marked = highlight("<b>bomb</b> and more", [{"token": " bomb", "mass": 2.0}])
    assert "&lt;b&gt;" in marked and ">bomb</mark>" in marked


def test_highlight_marks_whole_words_only():
    marked = highlight("the band and the brand", [{"token": " and", "mass": 1.0}])
    assert marked.count("<mark") == 1 and "b<mark" not in marked


def test_score_and_report_agree_on_where_the_metadata_is(tmp_path, model_dir, planted):
    """A custom --output name (data.jsonl, not data.scores.jsonl) once made report parse the score
    file itself as its metadata: score with each name, then the report must show the run's model and
    input, read from the metadata score wrote."""
    records = [chat("tell me a story", a) for a in ANSWERS]
    data = write_jsonl(tmp_path / "in.jsonl", records)
    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    config = ScoreConfig(model=str(model_dir), sae=str(planted), features=str(features))
    for name in ("data.scores.jsonl", "data.jsonl", "run.out.jsonl"):
        scores = tmp_path / "out" / name
        summary = score_file(data, config, scores)
        assert summary.outputs.scores == scores and summary.outputs.meta != scores
        html_path, _, _ = write_report(scores, tmp_path / f"{name}.html", top_n=2)
        page = html_path.read_text()
        assert f"<td>model</td><td>{model_dir}</td>" in page
        assert f"<td>input</td><td>{data}</td>" in page
        assert f"<td>records scored</td><td>{len(records)}</td>" in page