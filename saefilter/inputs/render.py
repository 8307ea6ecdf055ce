"""Render a conversation with the model's own chat template and mark the tokens to score.

By default only the tokens supervised fine-tuning trains on are scored: the assistant turns of a
chat (content plus the end-of-turn marker), or every token of a plain-text record. The prompt
shapes the activations through attention but is not itself amplified by the fine-tune.
The first position is never scored: it is an attention sink with outsized norms in most models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from saefilter.inputs.formats import Conversation, FormatError, Turn

TokenMode = Literal["response", "all"]

FALLBACK_TEMPLATE_NOTE = "tokenizer has no chat template; using a plain 'role: content' layout"


@dataclass(frozen=True)
class RenderedText:
    text: str
    scored_spans: tuple[tuple[int, int], ...]  # character ranges whose tokens are scored
    add_special_tokens: bool  # False when the chat template already wrote BOS and friends
    answers: tuple[tuple[int, int], ...] = ()  # the answers' own characters (no template markup), for explanations


@dataclass(frozen=True)
class EncodedSample:
    input_ids: list[int]
    scored: list[bool]
    truncated: bool
    # what explanations map tokens back to words with: the rendered text, each token's character
    # range in it, and the answers' ranges (empty for samples built without text)
    text: str = field(default="", compare=False, repr=False)
    offsets: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)
    answers: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def n_scored(self) -> int:
        return sum(self.scored)


def _messages(turns: tuple[Turn, ...]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} for t in turns]


def _apply_template(tokenizer: Any, turns: tuple[Turn, ...], generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            _messages(turns), tokenize=False, add_generation_prompt=generation_prompt
        )
    text = "".join(f"{t.role}: {t.content}\n\n" for t in turns)
    return text + ("assistant: " if generation_prompt else "")


def _assistant_spans(tokenizer: Any, turns: tuple[Turn, ...], full: str) -> list[tuple[int, int]]:
    """Char spans of each assistant turn, found by rendering the conversation up to that turn.

    Templates that re-render earlier turns differently (so a prefix is not a prefix) fall back to
    locating the turn's content in the full rendering.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, turn in enumerate(turns):
        if turn.role != "assistant" or not turn.content:
            continue
        before = _apply_template(tokenizer, turns[:i], generation_prompt=True)
        through = _apply_template(tokenizer, turns[: i + 1], generation_prompt=False)
        if full.startswith(through) and through.startswith(before) and len(before) >= cursor:
            start, end = len(before), len(through.rstrip())
        else:
            start = full.find(turn.content, cursor)
            if start < 0:
                raise FormatError(f"chat template does not reproduce assistant turn {i}")
            end = start + len(turn.content)
        spans.append((start, end))
        cursor = end
    return spans


def _answer_ranges(conversation: Conversation, full: str, spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Each assistant turn's own characters within its scored span (the span without the template's
    end-of-turn markup), or the span where the content is not found verbatim."""
    contents = [t.content for t in conversation.turns if t.role == "assistant" and t.content]
    ranges = []
    for content, (start, end) in zip(contents, spans, strict=True):
        found = full.find(content, start, end + len(content))
        ranges.append((found, found + len(content)) if found >= 0 else (start, end))
    return tuple(ranges)


def render(conversation: Conversation, tokenizer: Any, tokens: TokenMode = "response") -> RenderedText:
    if not conversation.is_chat:
        text = conversation.text or ""
        return RenderedText(text, ((0, len(text)),), add_special_tokens=True, answers=((0, len(text)),))
    full = _apply_template(tokenizer, conversation.turns, generation_prompt=False)
    if tokens == "all":
        try:
            answers = _answer_ranges(conversation, full, _assistant_spans(tokenizer, conversation.turns, full)) \
                if conversation.has_assistant_turn else ((0, len(full)),)
        except FormatError:  # a template that hides the turns: explain over the whole text
            answers = ((0, len(full)),)
        return RenderedText(full, ((0, len(full)),), add_special_tokens=False, answers=answers)
    if not conversation.has_assistant_turn:
        raise FormatError("chat has no assistant turn to score (use --tokens all to score the prompt)")
    spans = _assistant_spans(tokenizer, conversation.turns, full)
    return RenderedText(full, tuple(spans), add_special_tokens=False, answers=_answer_ranges(conversation, full, spans))


def encode(rendered: RenderedText, tokenizer: Any, max_tokens: int) -> EncodedSample:
    """Tokenise with offsets and mark scored tokens; right-truncate like SFT trainers do."""
    if not getattr(tokenizer, "is_fast", False):
        raise FormatError("a fast (Rust) tokenizer is needed for token offsets")
    enc = tokenizer(
        rendered.text,
        add_special_tokens=rendered.add_special_tokens,
        return_offsets_mapping=True,
        truncation=False,
    )
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    truncated = len(ids) > max_tokens
    ids, offsets = ids[:max_tokens], offsets[:max_tokens]
    scored = [
        position > 0 and end > start and any(start < s_end and end > s_start for s_start, s_end in rendered.scored_spans)
        for position, (start, end) in enumerate(offsets)
    ]
    if not any(scored):
        reason = "no scored tokens"
        if truncated:
            reason += f" within the first {max_tokens} tokens (raise --max-tokens)"
        raise FormatError(reason)
    return EncodedSample(ids, scored, truncated, rendered.text, tuple(offsets), rendered.answers)
