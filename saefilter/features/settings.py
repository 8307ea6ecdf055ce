"""How `features build` is configured, beside what it configures (features/selection.py), and light
to import: the CLI reads its flags' defaults from here on every start.

The contrasts shipped in saefilter/contrasts (scripts/build_contrasts.py); what `features build`
with no reference files and no --contrast selects from (the paired answers, as the embedded default
is built); how many latents it keeps from one contrast, and from each when it merges several; and
how many tokens of a reference text it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BUILTIN_CONTRASTS = ("toxicity", "intent", "answers", "code")
DEFAULT_CONTRASTS = ("answers",)
DEFAULT_TOP = 200
DEFAULT_TOP_EACH = 20
BUILD_MAX_TOKENS = 512
FUNCTION_WORD_SHARE = 0.5  # a latent whose peak words are at least this share function words is left out

Selection = Literal["token-controlled", "activation"]

# How `features build` ranks latents: token-controlled unless asked otherwise, so that a latent
# firing on a word in every context ('how', a name) is not taken for harm.
SELECTIONS = ("token-controlled", "activation")


@dataclass(frozen=True)
class SelectionSettings:
    """How `features build` picks latents from one contrast (CLI flags of the same names)."""

    top: int = DEFAULT_TOP
    min_frequency: float = 0.02
    max_benign_frequency: float = 0.5
    selection: Selection = "token-controlled"
    identity_filter: bool = True
    function_word_filter: bool = True
    function_word_share: float = FUNCTION_WORD_SHARE
