"""Matched pairs for drift: one prompt answered harmfully and benignly, with a kind of harm and a split.

The built-in set (`saefilter/drift/data/drift_pairs.jsonl`) is evaluation data only: `features build`
refuses any contrast that shares an answer with it, so the yardstick never becomes training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from saefilter.errors import InputError

BUILTIN_PAIRS = Path(__file__).parent / "data" / "drift_pairs.jsonl"
SPLITS = ("dev", "test", "all")
REQUIRED = ("id", "category", "prompt", "harmful", "benign")


@dataclass(frozen=True)
class MatchedPair:
    pair_id: str
    kind: str
    split: str
    prompt: str
    harmful: str
    benign: str


def _parse(path: Path, line_no: int, text: str) -> MatchedPair:
    where = f"{path}:{line_no}"
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object with {', '.join(REQUIRED)}")
    missing = [key for key in REQUIRED if not isinstance(row.get(key), str) or not row[key].strip()]
    if missing:
        raise InputError(f"{where}: missing or empty {', '.join(missing)} (a pair needs {', '.join(REQUIRED)})")
    if row["harmful"].strip() == row["benign"].strip():
        raise InputError(f"{where}: the harmful and benign answers are the same text")
    return MatchedPair(row["id"], row["category"], str(row.get("split", "")), row["prompt"], row["harmful"], row["benign"])


def read_pairs(path: Path | str) -> list[MatchedPair]:
    """Every pair of a JSONL file `{"id", "category", "prompt", "harmful", "benign"[, "split"]}`; a bad
    line is an error naming the file and line (no pair is silently dropped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pairs file")
    pairs: list[MatchedPair] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            pair = _parse(path, line_no, text)
            if pair.pair_id in seen:
                raise InputError(f"{path}:{line_no}: id '{pair.pair_id}' repeats line {seen[pair.pair_id]}")
            seen[pair.pair_id] = line_no
            pairs.append(pair)
    if not pairs:
        raise InputError(f"{path}: no pairs")
    return pairs


def load_pairs(source: str = "builtin", split: str = "test", kinds: tuple[str, ...] = ()) -> list[MatchedPair]:
    """The pairs of `source` ('builtin' or a JSONL file) in `split` ('dev', 'test' or 'all'; a file
    without splits counts as all), restricted to `kinds` when given."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}'; use {', '.join(SPLITS)}")
    pairs = read_pairs(BUILTIN_PAIRS if source == "builtin" else source)
    if split != "all" and any(p.split for p in pairs):
        pairs = [p for p in pairs if p.split == split]
    if kinds:
        unknown = sorted(set(kinds) - {p.kind for p in pairs})
        if unknown:
            raise InputError(f"no pairs of kind {', '.join(unknown)} in {source} ({split})")
        pairs = [p for p in pairs if p.kind in kinds]
    if not pairs:
        raise InputError(f"{source}: no pairs in split '{split}'")
    return pairs


def builtin_answer_texts() -> frozenset[str]:
    """Every answer of the built-in drift pairs, normalised, to keep them out of feature contrasts."""
    return frozenset(" ".join(text.split()) for p in read_pairs(BUILTIN_PAIRS) for text in (p.harmful, p.benign))


def refuse_drift_answers(path: object, conversations: list) -> list:
    """`conversations` unchanged, or an InputError naming the first row (1-based) that holds an answer
    of the built-in drift pairs: features learnt from the yardstick would grade themselves."""
    answers = builtin_answer_texts()
    for row, conversation in enumerate(conversations, start=1):
        texts = [t.content for t in conversation.turns if t.role == "assistant"] if conversation.is_chat else [
            conversation.text or ""]
        if any(" ".join(text.split()) in answers for text in texts):
            raise InputError(
                f"{path}: row {row} is an answer of saefilter's built-in drift pairs, which are evaluation "
                "data only (`saefilter drift`); remove them from the contrast"
            )
    return conversations
