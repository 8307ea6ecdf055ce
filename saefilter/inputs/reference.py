"""Read reference text (harmful, benign, SAE training corpora) from any common file layout.

- .jsonl / .jsonl.gz: any dataset format saefilter scores (chat, prompt/completion, Alpaca, text)
- .json: a list of such records, or an object mapping ids to strings
- .csv: one text per row, from `column` (or the first of a few usual names)
- .txt: one text per line (a leading "- " is dropped, as in ToxiGen files)

and the built-in contrasts shipped in the package (`builtin_contrasts`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.inputs.formats import Conversation, FormatError, to_conversation
from saefilter.inputs.records import BadLine, read_lines

CSV_TEXT_COLUMNS = ("text", "messages", "tweet", "Behavior", "goal", "forbidden_prompt", "prompt", "instruction")


def _from_object(item: Any, where: str, field: str | None) -> Conversation:
    """The conversation of one record, remembering `where` it was read (for overlap warnings)."""
    if isinstance(item, str):
        return Conversation(text=item, origin=where)
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object or a string")
    try:
        return replace(to_conversation(item, field), origin=where)
    except FormatError as err:
        raise InputError(f"{where}: {err}") from None


def _csv_texts(path: Path, column: str | None) -> Iterator[tuple[int, str]]:
    """(row number, counted from 1 after the header, text) of each non-empty cell of the text column."""
    import pandas as pd

    frame = pd.read_csv(path)
    chosen = column or next((c for c in CSV_TEXT_COLUMNS if c in frame.columns), None)
    if chosen is None or chosen not in frame.columns:
        raise InputError(f"{path}: no text column; pass one of: {', '.join(map(str, frame.columns))}")
    for row, value in frame[chosen].items():
        if pd.notna(value) and str(value).strip():
            yield int(row) + 1, str(value)


def read_reference(path: Path, column: str | None = None) -> Iterator[Conversation]:
    """Every usable text of a reference file, as conversations (plain texts for CSV/TXT)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        for item in read_lines(path):
            if isinstance(item, BadLine):
                if item.blank:
                    continue
                raise InputError(item.message())
            yield _from_object(item.data, f"{path}:{item.line_no}", column)
    elif name.endswith(".json"):
        payload = json.loads(path.read_text(encoding="utf-8"))
        items = list(payload.values()) if isinstance(payload, dict) else payload
        for i, item in enumerate(items):
            yield _from_object(item, f"{path}[{i}]", column)
    elif name.endswith(".csv"):
        for row, text in _csv_texts(path, column):
            yield Conversation(text=text, origin=f"{path}: row {row}")
    elif name.endswith(".txt"):
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip().removeprefix("- ").strip()
            if text:
                yield Conversation(text=text, origin=f"{path}:{line_no}")
    else:
        raise InputError(f"{path}: unsupported reference format (use .jsonl, .jsonl.gz, .json, .csv or .txt)")


def reference_categories(paths: Sequence[Path]) -> list[str] | None:
    """The `category` of every record of JSONL reference files, in `read_reference` order (the kind
    of harm of each pair of a paired contrast); None unless every record has one."""
    categories: list[str] = []
    for path in paths:
        if not path.name.lower().endswith((".jsonl", ".jsonl.gz")):
            return None
        for item in read_lines(path):
            if isinstance(item, BadLine) and item.blank:
                continue
            value = item.data.get("category") if not isinstance(item, BadLine) and isinstance(item.data, dict) else None
            if not isinstance(value, str) or not value.strip():
                return None
            categories.append(value.strip())
    return categories


def read_labelled(path: Path, column: str, field: str | None = None) -> tuple[list[Conversation], list[int]]:
    """Conversations and 0/1 labels from a JSONL file whose records carry a label key."""
    conversations, labels = [], []
    for item in read_lines(path):
        if isinstance(item, BadLine):
            if item.blank:
                continue
            raise InputError(item.message())
        if column not in item.data:
            raise InputError(f"{path}:{item.line_no}: no label key '{column}'")
        conversations.append(_from_object(item.data, f"{path}:{item.line_no}", field))
        labels.append(1 if item.data[column] else 0)
    return conversations, labels


PAIR_KEYS = (("harmful", "benign"), ("rejected", "chosen"))
_DIALOGUE_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant): ")


def dialogue_messages(dialogue: str) -> list[dict[str, str]]:
    """An HH-RLHF style transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...') as chat messages."""
    parts = _DIALOGUE_TURN.split(dialogue.strip())
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not a 'Human: ... Assistant: ...' transcript")
    return [{"role": "user" if speaker == "Human" else "assistant", "content": text.strip()}
            for speaker, text in zip(parts[1::2], parts[2::2], strict=True)]


def _pair_side(value: Any, prompt: Any, where: str, field: str | None) -> Conversation:
    if isinstance(value, str) and prompt is None:
        try:
            return _from_object({"messages": dialogue_messages(value)}, where, None)
        except ValueError:
            return Conversation(text=value, origin=where)
    if isinstance(value, str | list) and prompt is not None:
        return _from_object({"prompt": prompt, "completion": value}, where, None)
    return _from_object(value, where, field)


def read_pair_sides(path: Path, field: str | None = None) -> Iterator[tuple[Conversation, Conversation]]:
    """(harmful, benign) conversations of a matched-pairs file, one pair per line.

    A record is {"prompt", "harmful", "benign"} (answers to the same prompt: strings or message
    lists) or {"chosen", "rejected"} with `rejected` the harmful side (HH-RLHF: whole transcripts,
    or any record format saefilter reads; a "prompt" key is shared by both sides when present)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    for item in read_lines(path):
        if isinstance(item, BadLine):
            if item.blank:
                continue
            raise InputError(item.message())
        where = f"{path}:{item.line_no}"
        keys = next(((h, b) for h, b in PAIR_KEYS if h in item.data and b in item.data), None)
        if keys is None:
            raise InputError(f"{where}: a pair needs 'harmful' and 'benign' (with 'prompt'), or 'chosen' and 'rejected'; "
                             f"keys: {', '.join(sorted(item.data)) or 'none'}")
        prompt = item.data.get("prompt")
        yield tuple(_pair_side(item.data[key], prompt, f"{where} ({key})", field) for key in keys)  # type: ignore[misc]


BUILTIN_CONTRASTS_DIR = Path(__file__).parent.parent / "contrasts"


@dataclass(frozen=True)
class Contrast:
    """A harmful and a benign reference set that differ in one kind of harm (and, ideally, nothing else)."""

    name: str
    description: str
    harmful: Path
    benign: Path
    paired: bool = False  # row i of each side answers the same user turn


def builtin_manifest() -> dict:
    return json.loads((BUILTIN_CONTRASTS_DIR / "manifest.json").read_text(encoding="utf-8"))


def builtin_contrasts(names: Sequence[str] | None = None) -> list[Contrast]:
    """The contrasts shipped in the package (saefilter/contrasts/manifest.json), all or those named."""
    manifest = builtin_manifest()["contrasts"]
    unknown = [n for n in names or () if n not in manifest]
    if unknown:
        raise InputError(f"no built-in contrast {', '.join(unknown)}; there are: {', '.join(manifest)}")
    return [Contrast(name, entry["description"], BUILTIN_CONTRASTS_DIR / entry["harmful"]["file"],
                     BUILTIN_CONTRASTS_DIR / entry["benign"]["file"], bool(entry.get("paired", False)))
            for name, entry in manifest.items() if not names or name in names]


def builtin_benign_texts() -> list[Conversation]:
    """The benign sides of every built-in contrast: broad benign text the identity filter compares with."""
    return [c for contrast in builtin_contrasts() for c in read_reference(contrast.benign)]


def builtin_hard_negative_texts() -> list[Conversation]:
    """Benign answers about dark topics (war, overdose, scams, hate crimes, grief), shipped as the
    benign extra of the answers contrast's harmful direction (manifest entry `hard_negatives`)."""
    entry = builtin_manifest()["hard_negatives"]
    return list(read_reference(BUILTIN_CONTRASTS_DIR / entry["file"]))


def hard_negative_texts(values: Sequence[str], builtin_default: bool, column: str | None = None) -> tuple[list[Conversation], str]:
    """The texts `--hard-negatives` names ('builtin', 'none' or files; none given: the built-in ones
    when `builtin_default`, else none), and how to say where they came from."""
    values = [str(v) for v in values] or (["builtin"] if builtin_default else ["none"])
    if "none" in values:
        if len(values) > 1:
            raise InputError("--hard-negatives none does not combine with other values")
        return [], "none"
    texts: list[Conversation] = []
    for value in values:
        texts += builtin_hard_negative_texts() if value == "builtin" else list(read_reference(Path(value), column))
    return texts, ", ".join("built-in" if v == "builtin" else v for v in values)


def builtin_identity_texts() -> list[Conversation]:
    """Neutral sentences naming religions, nationalities, genders, ethnicities and people, shipped for
    the identity filter of feature selection (manifest entry `identity_filter`)."""
    entry = builtin_manifest()["identity_filter"]
    return list(read_reference(BUILTIN_CONTRASTS_DIR / entry["file"]))
