"""Are the words an explanation names the reason for the score? ERASER's comprehensiveness
(DeYoung et al. 2020): delete the k named words from the answer, score again, and compare the drop
with deleting k words drawn at random from the same answer. A faithful explanation's words cut the
score more than random ones do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from saefilter.inputs.formats import Conversation, Turn
from saefilter.scoring.words import Word


def without_words(answer: str, words: Sequence[Word]) -> str:
    """The answer with these words removed, each with one space beside it."""
    text = answer
    for word in sorted(words, key=lambda w: w.start, reverse=True):
        start, end = word.start, word.end
        if end < len(text) and text[end] == " ":  # one space goes with the word
            end += 1
        elif start > 0 and text[start - 1] == " ":
            start -= 1
        text = text[:start] + text[end:]
    return text


def with_answer(conversation: Conversation, turn: int, answer: str) -> Conversation:
    """The conversation with its `turn`-th answer (assistant turn with content, or the text) replaced."""
    if not conversation.is_chat:
        return replace(conversation, text=answer)
    turns, seen = list(conversation.turns), -1
    for i, current in enumerate(turns):
        if current.role == "assistant" and current.content:
            seen += 1
            if seen == turn:
                turns[i] = Turn("assistant", answer)
                return replace(conversation, turns=tuple(turns))
    raise ValueError(f"the conversation has no answer {turn}")


def deleted(conversation: Conversation, answers: Sequence[str], words: Sequence[Word]) -> Conversation:
    """The conversation with `words` deleted from whichever answers hold them."""
    for turn in sorted({w.turn for w in words}):
        conversation = with_answer(conversation, turn, without_words(answers[turn], [w for w in words if w.turn == turn]))
    return conversation


@dataclass(frozen=True)
class Comprehensiveness:
    k: int
    named: float  # score drop when the k named words are deleted
    random: float  # mean score drop over `draws` deletions of k random words of the same answers
    draws: int

    @property
    def ratio(self) -> float | None:
        """How many times the random drop the named drop is (None when random words change nothing)."""
        return self.named / self.random if self.random > 0 else None


def random_words(words: Sequence[Word], k: int, draws: int, seed: int) -> list[list[Word]]:
    rng = random.Random(seed)
    return [rng.sample(list(words), min(k, len(words))) for _ in range(draws)]
