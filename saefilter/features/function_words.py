"""English function words, for the function-word filter of feature selection.

A latent whose strongest activations in harmful text sit on 'of', 'be', 'Just', '.' or the end of a
turn may well rise with harmful content, but its label tells a reader nothing about harm, and such
latents fire on every text (they are how a haiku or a bakery name reached the top of a ranking).
The list is closed-class words only (articles, pronouns, prepositions, conjunctions, auxiliaries
and modals, negations, quantifiers, the commonest adverbs of time and degree) plus any token with
no letter in it (punctuation, numbers, chat-template markers with no word in them). Content words
never enter it, however frequent ('people', 'make', 'time').
"""

from __future__ import annotations

from collections import Counter

_WORDS = """
a an the this that these those my your his her its our their whose which what who whom whoever whatever
whichever whomever i me you he him she it we us they them myself yourself himself herself itself ourselves
yourselves themselves mine yours hers ours theirs
of in on at to from by with without about into onto upon over under above below across through throughout
between among around against along after before during until till since toward towards within beyond behind
beside besides near off out up down via per
and or but nor so yet if then else than because although though while whereas unless whether as once when
where why how
be am is are was were been being have has had having do does did doing done will would shall should can
could may might must
not no never ever always just already too very really actually also only even still again back here there
now soon often quite rather almost
all every each some any none both either neither much many more most few less least several enough one ones
other another such same everyone everything everybody anyone anything anybody someone something somebody
nobody nothing
s t ll re ve d m n't 't 's 're 've 'll 'd 'm im_end im_start
"""
FUNCTION_WORDS = frozenset(_WORDS.split())


def is_function_word(word: str) -> bool:
    """True for a closed-class English word (any case) or a token with no letter at all."""
    cleaned = word.strip().lower()
    if not any(ch.isalpha() for ch in cleaned):
        return True
    return cleaned in FUNCTION_WORDS or cleaned.strip("'<>|") in FUNCTION_WORDS


def function_word_share(words: Counter[str]) -> float:
    """The share of a latent's peak words (counted over its top samples) that are function words."""
    total = sum(words.values())
    if total == 0:
        return 0.0
    return sum(n for word, n in words.items() if is_function_word(word)) / total
