"""Compact fingerprints of texts, and the overlap of new texts with them (decontamination).

A text is normalised (Unicode NFKC, case folded, punctuation and spacing dropped: the words alone),
then fingerprinted twice, as evaluation harnesses do (the GPT-3 paper, lm-evaluation-harness):
- an exact hash of its whole word sequence, which catches copies differing in case or spacing;
- the hashes of its 13-word windows (13-grams), which catch paraphrases and partial copies. A short
  common phrase ("how are you today") is far shorter than 13 words and never matches on its own.

Hashes are 40-bit integers (BLAKE2b of each word, combined over a window by a polynomial rolling
hash), kept as sorted unique arrays and stored in 5 bytes each: with the tens of thousands of hashes
a feature set keeps, a 10,000-row file meets a false 13-gram match with odds of about 3 in 100. A
source may keep only the 13-grams whose hash is divisible by `sample` (a power of two; the caller
sets the cap): the same 13-grams are kept on every side, so a passage shared over L words is still
caught with probability 1 - (1 - 1/sample) ** (L - 12). Exact hashes are always all kept.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from saefilter.errors import InputError
from saefilter.inputs.formats import Conversation

NGRAM = 13
HASH_BYTES = 5
_MASK = np.uint64((1 << (8 * HASH_BYTES)) - 1)
_WORD = re.compile(r"\w+")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so the rolling hash mixes every word


def normalised_words(text: str) -> list[str]:
    """The words of `text` after Unicode, case and spacing normalisation (punctuation dropped)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=1 << 16)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_hashes(words: Sequence[str]) -> np.ndarray:
    return np.fromiter((_word_hash(w) for w in words), dtype=np.uint64, count=len(words))


def exact_hash(words: Sequence[str]) -> int:
    """One 40-bit hash of the whole normalised word sequence."""
    return int.from_bytes(hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=HASH_BYTES).digest(), "little")


def ngram_hashes(words: Sequence[str], n: int = NGRAM) -> np.ndarray:
    """The hash of every n-word window (none for a text shorter than n words)."""
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    hashes = _word_hashes(words)
    windows = len(words) - n + 1
    out = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for j in range(n):
            out = out * _MULTIPLIER + hashes[j : j + windows]
    return (out ^ (out >> np.uint64(29))) & _MASK  # the high bits, which mix every word, folded in


def answer_text(conversation: Conversation) -> str:
    """What a fingerprint reads of a record: its last assistant turn (the answer a fine-tune learns and
    a contrast is about), else its text, else all its turns."""
    if not conversation.is_chat:
        return conversation.text or ""
    answers = [t.content for t in conversation.turns if t.role == "assistant" and t.content.strip()]
    return answers[-1] if answers else "\n".join(t.content for t in conversation.turns)


def _pack(values: np.ndarray) -> str:
    as_bytes = np.ascontiguousarray(values, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, :HASH_BYTES]
    return base64.b64encode(as_bytes.tobytes()).decode("ascii")


def _unpack(text: str, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise InputError(f"{where}: not base64") from None
    if len(raw) % HASH_BYTES:
        raise InputError(f"{where}: {len(raw)} bytes is not a whole number of {HASH_BYTES}-byte hashes")
    padded = np.zeros((len(raw) // HASH_BYTES, 8), dtype=np.uint8)
    padded[:, :HASH_BYTES] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, HASH_BYTES)
    return padded.view("<u8").reshape(-1).astype(np.uint64)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """The rows of one source: how many, the exact hash of each, and (a sample of) its 13-grams."""

    rows: int
    exact: np.ndarray  # sorted unique uint64
    ngrams: np.ndarray  # sorted unique uint64, those divisible by `sample`
    sample: int = 1

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Fingerprint) and (self.rows, self.sample) == (other.rows, other.sample)
                and np.array_equal(self.exact, other.exact) and np.array_equal(self.ngrams, other.ngrams))

    __hash__ = None  # type: ignore[assignment]

    def as_json(self) -> dict:
        return {"rows": self.rows, "exact": _pack(self.exact), "ngrams": _pack(self.ngrams),
                "ngram_sample": self.sample}

    @classmethod
    def from_json(cls, payload: dict, where: str) -> Fingerprint:
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), int):
            raise InputError(f"{where}: expected {{'rows', 'exact', 'ngrams', 'ngram_sample'}}")
        sample = payload.get("ngram_sample", 1)
        if not isinstance(sample, int) or sample < 1 or sample & (sample - 1):
            raise InputError(f"{where}: 'ngram_sample' must be a power of two, got {sample!r}")
        return cls(payload["rows"], _unpack(str(payload.get("exact", "")), f"{where}.exact"),
                   _unpack(str(payload.get("ngrams", "")), f"{where}.ngrams"), sample)


def fingerprint(texts: Iterable[str], cap: int | None = None) -> Fingerprint:
    """The fingerprint of a source's texts, its 13-grams thinned by hash to at most `cap` (None: all)."""
    exact, grams, rows = [], [], 0
    for text in texts:
        words = normalised_words(text)
        rows += 1
        exact.append(exact_hash(words))
        grams.append(ngram_hashes(words))
    ngrams = np.unique(np.concatenate(grams)) if grams else np.empty(0, dtype=np.uint64)
    sample = 1
    while cap is not None and len(ngrams) > cap:
        sample *= 2
        ngrams = ngrams[ngrams % np.uint64(sample) == 0]
    return Fingerprint(rows, np.unique(np.array(exact, dtype=np.uint64)), ngrams, sample)


@dataclass(frozen=True)
class Match:
    """Row `row` of the checked texts matches source `source`: an exact copy, or `shared` 13-grams."""

    row: int
    source: str
    exact: bool
    shared: int


def find_matches(texts: Sequence[str], sources: dict[str, Fingerprint]) -> list[Match]:
    """Every (row, source) where a checked text copies or shares a 13-gram with a source; rows in
    order. Vectorised: one sorted-array membership test per source over all texts at once."""
    words = [normalised_words(t) for t in texts]
    exact = np.array([exact_hash(w) for w in words], dtype=np.uint64)
    per_row = [ngram_hashes(w) for w in words]
    owners = np.repeat(np.arange(len(texts)), [len(g) for g in per_row])
    grams = np.concatenate(per_row) if per_row else np.empty(0, dtype=np.uint64)
    matches: list[Match] = []
    for name, source in sources.items():
        copied = np.isin(exact, source.exact, assume_unique=False)
        sampled = grams % np.uint64(source.sample) == 0 if source.sample > 1 else slice(None)
        hit = np.zeros(len(grams), dtype=bool)
        hit[sampled] = np.isin(grams[sampled], source.ngrams)
        shared = np.bincount(owners[hit], minlength=len(texts))
        for row in np.flatnonzero(copied | (shared > 0)):
            matches.append(Match(int(row), name, bool(copied[row]), int(shared[row])))
    return sorted(matches, key=lambda m: (m.row, m.source))
