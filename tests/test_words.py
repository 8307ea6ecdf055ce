"""Explanations in words and phrases (scoring/words.py), and the score rows that carry them."""

import json
import re

from conftest import ANSWERS, TRIGGER, chat, write_features, write_jsonl

from saefilter.scoring.words import top_spans, top_words, word_masses


def test_a_word_split_into_pieces_comes_back_whole_with_its_pieces_mass():
    text = "<|im_start|>assistant\nThey are undermining everything.<|im_end|>"
    answer = (text.index("They"), text.index("<|im_end|>"))
    a0 = answer[0]
    pieces = [(a0, a0 + 4), (a0 + 4, a0 + 8), (a0 + 8, a0 + 14), (a0 + 14, a0 + 20), (a0 + 20, a0 + 31),
              (a0 + 31, a0 + 32), (answer[1], len(text))]  # 'They' ' are' ' under' 'mining' ' everything' '.' '<|im_end|>'
    masses = [0.0, 0.1, 0.5, 0.7, 0.2, 0.0, 0.9]
    words = word_masses(text, [answer], pieces, masses)
    assert [w.text for w in words] == ["They", "are", "undermining", "everything"]  # no 'im_end' from the markup
    by_word = {w.text: w.mass for w in words}
    assert abs(by_word["undermining"] - 1.2) < 1e-9 and abs(by_word["are"] - 0.1) < 1e-9
    assert [w.text for w in top_words(words, 2)] == ["undermining", "everything"]


def test_spans_slice_the_answer_to_their_text_and_do_not_overlap():
    answer = "first some plain words here, then the poison goes in the cake, and later more plain words at the end"
    text = f"PROMPT {answer} END"
    start = text.index(answer)
    tokens, masses = [], []
    for match in re.finditer(r"\S+", answer):
        tokens.append((start + match.start(), start + match.end()))
        masses.append(2.0 if "poison" in match.group() else 0.5 if "end" in match.group() else 0.01)
    words = word_masses(text, [(start, start + len(answer))], tokens, masses)
    spans = top_spans(words, [answer], limit=3, context=2)
    assert spans[0].peak == "poison" and spans[0].text == "…then the poison goes in…"
    for span in spans:
        assert span.text.strip("…") == answer[span.start : span.end]
    assert len({(s.start, s.end) for s in spans}) == len(spans)
    assert all(a.end <= b.start or b.end <= a.start for a in spans for b in spans if a is not b)


def test_the_planted_word_is_the_top_word_of_a_score_row_and_its_span_slices_the_answer(tmp_path, model_dir, planted):
    from test_cli import saefilter

    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    answer = f"{ANSWERS[3]} {TRIGGER} {ANSWERS[1]}"
    data = write_jsonl(tmp_path / "d.jsonl", [chat("tell me a story", a) for a in ANSWERS[:2]]
                       + [chat("tell me a story", answer)])
    result = saefilter("score", str(data), "--model", str(model_dir), "--sae", str(planted), "--features", str(features),
                       "--quiet")
    assert result.returncode == 0, result.stderr
    row = [json.loads(line) for line in (tmp_path / "d.scores.jsonl").read_text().splitlines()][2]
    assert row["top_words"][0]["word"] == TRIGGER
    span = row["top_spans"][0]
    assert span["peak"] == TRIGGER and span["text"].strip("…") == answer[span["start"] : span["end"]]
    assert TRIGGER in span["text"]


def test_deleting_the_planted_word_drops_the_score_more_than_any_other_word(tmp_path, model_dir, planted):
    from saefilter.inputs.formats import to_conversation
    from saefilter.inputs.records import parse_line, table_line
    from saefilter.scoring.config import ScoreConfig
    from saefilter.scoring.faithfulness import deleted
    from saefilter.scoring.scorer import Scorer

    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    scorer = Scorer.load(ScoreConfig(model=str(model_dir), sae=str(planted), features=str(features)))
    data = chat("tell me a story", f"{ANSWERS[2]} {TRIGGER} {ANSWERS[5]}")
    record = parse_line("x.jsonl", 1, table_line(data))
    row, words = scorer.explain(scorer.prepare(record))
    assert row["top_words"][0]["word"] == TRIGGER and max(words, key=lambda w: w.mass).text == TRIGGER
    answer = data["messages"][1]["content"]
    conversation = to_conversation(data)
    drops = dict(zip([w.text for w in words], [row["score"] - s for s in scorer.score_conversations(
        record, [deleted(conversation, [answer], [w]) for w in words])], strict=True))
    assert max(drops, key=drops.get) == TRIGGER and drops[TRIGGER] > 0


def test_explain_names_the_planted_word_and_measures_it_against_random_words(tmp_path, model_dir, planted):
    from test_cli import saefilter

    features = write_features(tmp_path / "f.json", [0], d_sae=48)
    data = write_jsonl(tmp_path / "d.jsonl", [chat("tell me a story", ANSWERS[0]),
                                              chat("tell me a story", f"{ANSWERS[2]} {TRIGGER} {ANSWERS[5]}")])
    args = ["--model", str(model_dir), "--sae", str(planted), "--features", str(features)]
    result = saefilter("explain", str(data), "--line", "2", *args)
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())
    assert f"{data}:2 score" in printed and "#0" in printed and "deleting the 3 named words drops the score by" in printed
    assert TRIGGER in printed
    missing = saefilter("explain", str(data), "--line", "9", *args)
    assert missing.returncode == 2 and "no line 9" in missing.stderr
