"""Explanations a person can read: the harmful mass of a sample's scored tokens summed into the
words of its answer, and the one to three phrases around the heaviest words.

Tokens are pieces ('under', 'mining'); a maintainer deciding whether to drop a row wants
'undermining' and the phrase it sits in. Each scored token's mass (its activations @ proximity, the
part of the score it carries) goes to every word of the answer its characters overlap, so a word
split into pieces comes back whole, and a token that also holds the space before a word counts for
that word. Pure functions on offsets: no model, no tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

WORD = re.compile(r"\w+(?:['’]\w+)*")
CONTEXT_WORDS = 3  # words kept on each side of a span's heaviest word
MAX_SPANS = 3
ELLIPSIS = "…"


@dataclass(frozen=True)
class Word:
    turn: int  # which answer of the record (0 = the first assistant turn, or the text)
    start: int  # character offsets into that answer
    end: int
    text: str
    mass: float


@dataclass(frozen=True)
class Span:
    turn: int
    start: int  # answer[start:end] is the phrase
    end: int
    text: str  # answer[start:end], with an ellipsis on each side where it cuts the answer short
    mass: float  # the harmful mass of its words
    peak: str  # its heaviest word


def word_masses(text: str, answers: Sequence[tuple[int, int]], token_spans: Sequence[tuple[int, int]],
                masses: Sequence[float]) -> list[Word]:
    """Every word of each answer (character range of `text`) with the mass of the tokens over it."""
    order = sorted(range(len(token_spans)), key=lambda i: token_spans[i])
    starts = [token_spans[i][0] for i in order]
    ends = [token_spans[i][1] for i in order]
    weights = [float(masses[i]) for i in order]
    words: list[Word] = []
    for turn, (a_start, a_end) in enumerate(answers):
        first = 0  # tokens ending before the current word are behind us for good
        for match in WORD.finditer(text, a_start, a_end):
            start, end = match.span()
            while first < len(ends) and ends[first] <= start:
                first += 1
            mass, j = 0.0, first
            while j < len(starts) and starts[j] < end:
                if ends[j] > start:
                    mass += weights[j]
                j += 1
            words.append(Word(turn, start - a_start, end - a_start, match.group(), mass))
    return words


def top_words(words: Sequence[Word], n: int) -> list[Word]:
    """The `n` heaviest distinct words (a word counted at its heaviest place), heaviest first."""
    best: dict[str, Word] = {}
    for word in words:
        key = word.text.casefold()
        if word.mass > 0 and (key not in best or word.mass > best[key].mass):
            best[key] = word
    return sorted(best.values(), key=lambda w: (-w.mass, w.turn, w.start))[:n]


def top_spans(words: Sequence[Word], answers: Sequence[str], limit: int = MAX_SPANS,
              context: int = CONTEXT_WORDS) -> list[Span]:
    """Up to `limit` phrases: each the heaviest word not yet covered, with `context` words on each
    side within its answer; phrases do not overlap."""
    order = sorted(range(len(words)), key=lambda i: (-words[i].mass, i))
    taken: list[tuple[int, int]] = []  # word index ranges already in a span
    spans: list[Span] = []
    for peak in order:
        if len(spans) == limit or words[peak].mass <= 0:
            break
        if any(lo <= peak <= hi for lo, hi in taken):
            continue
        turn = words[peak].turn
        lo, hi = peak, peak
        while lo > 0 and peak - lo < context and words[lo - 1].turn == turn and not _inside(lo - 1, taken):
            lo -= 1
        while hi + 1 < len(words) and hi - peak < context and words[hi + 1].turn == turn and not _inside(hi + 1, taken):
            hi += 1
        taken.append((lo, hi))
        answer = answers[turn]
        start, end = words[lo].start, words[hi].end
        shown = (ELLIPSIS if answer[:start].strip() else "") + answer[start:end] + (ELLIPSIS if answer[end:].strip() else "")
        spans.append(Span(turn, start, end, shown, sum(w.mass for w in words[lo : hi + 1]), words[peak].text))
    return spans


def _inside(index: int, taken: list[tuple[int, int]]) -> bool:
    return any(lo <= index <= hi for lo, hi in taken)
