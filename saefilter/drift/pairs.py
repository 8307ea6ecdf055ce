"""Matched pairs for drift: one prompt answered harmfully and benignly, with a kind of harm and a split.

The built-in set (`saefilter/drift/data/drift_pairs.jsonl`) is evaluation data only: `features build`
refuses any contrast that shares an answer with it, so the yardstick never becomes training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from saefilter.errors import InputError
from saefilter.inputs.fingerprint import Fingerprint, answer_text, find_matches, fingerprint

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
    line: int = field(default=0, compare=False)  # where it was read, for messages


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
    return MatchedPair(row["id"], row["category"], str(row.get("split", "")), row["prompt"], row["harmful"], row["benign"],
                       line_no)


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


@lru_cache(maxsize=1)
def builtin_answers_fingerprint() -> Fingerprint:
    """Every answer of the built-in drift pairs, fingerprinted whole (every 13-gram)."""
    return fingerprint(text for p in read_pairs(BUILTIN_PAIRS) for text in (p.harmful, p.benign))


def refuse_drift_answers(path: object, conversations: list) -> list:
    """`conversations` unchanged, or an InputError naming the first row that copies or paraphrases (a
    shared 13-gram) an answer of the built-in drift pairs: features learnt from the yardstick would
    grade themselves. The same check `eval` and `drift --pairs` run against a feature set."""
    matches = find_matches([answer_text(c) for c in conversations], {"drift pairs": builtin_answers_fingerprint()})
    if matches:
        first = matches[0]
        where = conversations[first.row].origin or f"{path}: row {first.row + 1}"
        how = "is" if first.exact else f"shares {first.shared} 13-word passage{'s' if first.shared > 1 else ''} with"
        more = f" ({len(matches)} such rows)" if len(matches) > 1 else ""
        raise InputError(f"{where}: this row {how} an answer of saefilter's built-in drift pairs, which are "
                         f"evaluation data only (`saefilter drift`); remove it from the contrast{more}")
    return conversations
