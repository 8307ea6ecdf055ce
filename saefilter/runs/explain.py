"""`saefilter explain FILE --line N`: one record in full, for a maintainer deciding about a row that
`check` blocked or `score` ranked high: its words shaded by harmful mass, its top features with
their labels and strongest contexts, its phrases, and how faithful the named words are (the score
drop when they are deleted, against random words of the same answer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.inputs.formats import Conversation, to_conversation
from saefilter.inputs.records import BadLine, Record, read_lines
from saefilter.progress import StatusFn, no_status
from saefilter.scoring.config import ScoreConfig
from saefilter.scoring.faithfulness import Comprehensiveness, deleted, random_words
from saefilter.scoring.scorer import Scorer, Skipped
from saefilter.scoring.words import Word, top_words

EXPLAIN_K = 3
RANDOM_DRAWS = 10


@dataclass(frozen=True)
class Explanation:
    record: Record
    row: dict[str, Any]
    answers: list[str]
    words: list[Word]
    features: list[dict[str, Any]]  # the row's top features with the set's strongest contexts
    faithfulness: Comprehensiveness | None  # None when the answers have too few words


def find_record(path: Path, line: int | None, record_id: str | None) -> Record:
    """The record at `line` (1-based) or with `record_id` (a score row's id), or an error saying why not."""
    if (line is None) == (record_id is None):
        raise InputError("give --line N or --id ID (the id of a score row)")
    for item in read_lines(path):
        if (line is not None and item.line_no == line) or (record_id is not None and not isinstance(item, BadLine)
                                                           and item.record_id == record_id):
            if isinstance(item, BadLine):
                raise InputError(item.message())
            return item
    raise InputError(f"{path}: no line {line}" if line is not None else f"{path}: no record with id {record_id}")


def comprehensiveness(scorer: Scorer, record: Record, conversation: Conversation, answers: list[str],
                      words: list[Word], score: float, k: int = EXPLAIN_K, draws: int = RANDOM_DRAWS,
                      seed: int = 0) -> Comprehensiveness | None:
    """The score drop when the k named words go, against k random words (mean of `draws`)."""
    if len(words) <= k:
        return None
    named = top_words(words, k)
    chosen = [named, *random_words(words, k, draws, seed)]
    scores = scorer.score_conversations(record, [deleted(conversation, answers, c) for c in chosen])
    return Comprehensiveness(k, score - scores[0], sum(score - s for s in scores[1:]) / draws, draws)


def explain(config: ScoreConfig, path: Path, line: int | None = None, record_id: str | None = None,
            status: StatusFn = no_status) -> Explanation:
    record = find_record(path, line, record_id)
    with status("loading model, SAE and features..."):
        scorer = Scorer.load(config)
    prepared = scorer.prepare(record)
    if isinstance(prepared, Skipped):
        raise InputError(f"{path}:{record.line_no}: {prepared.reason}")
    row, words = scorer.explain(prepared)
    encoded = prepared.encoded
    answers = [encoded.text[start:end] for start, end in encoded.answers]
    contexts = {f.index: f.stats.get("snippets", []) for f in scorer.method.feature_set.features}
    features = [{**f, "contexts": contexts.get(f.get("index"), [])[:2]} for f in row["top_features"]]
    conversation = to_conversation(record.data, config.field)
    faithful = comprehensiveness(scorer, record, conversation, answers, words, row["score"])
    return Explanation(record, row, answers, words, features, faithful)
