"""Turn a parsed JSON record into a conversation or a plain text, whatever dataset format it uses.

Supported per record (detected independently, so mixed files work):
- chat: {"messages": [{"role", "content"}, ...]} (OpenAI / TRL), also ShareGPT "conversations"
- prompt/completion: strings, or lists of messages (TRL conversational prompt-completion)
- Alpaca: {"instruction", "input", "output"}
- text: {"text": "..."}
`field` names another key holding either a string or a list of messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
}


class FormatError(ValueError):
    """The record is valid JSON but holds nothing this tool can score."""


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    """Either chat turns or a plain text (never both)."""

    turns: tuple[Turn, ...] = ()
    text: str | None = None
    origin: str | None = field(default=None, compare=False)  # "file:line" where it was read, for messages

    @property
    def is_chat(self) -> bool:
        return self.text is None

    @property
    def has_assistant_turn(self) -> bool:
        return any(turn.role == "assistant" and turn.content for turn in self.turns)


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal-style parts: keep the text parts
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        return "".join(p for p in parts if isinstance(p, str))
    if content is None:
        return ""
    raise FormatError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")


def _turns(messages: Any, where: str) -> list[Turn]:
    if not isinstance(messages, list):
        raise FormatError(f"{where} must be a list of messages, got {type(messages).__name__}")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise FormatError(f"{where}[{i}] is not an object")
        role_value = message.get("role", message.get("from"))
        role = ROLE_ALIASES.get(str(role_value).lower()) if role_value is not None else None
        if role is None:
            raise FormatError(f"{where}[{i}] has unknown role {json.dumps(role_value)}")
        content = message.get("content", message.get("value"))
        turns.append(Turn(role, _content_text(content, f"{where}[{i}]")))
    return turns


def _prompt_completion(prompt: Any, completion: Any) -> list[Turn]:
    prompt_turns = [Turn("user", prompt)] if isinstance(prompt, str) else _turns(prompt, "prompt")
    completion_turns = (
        [Turn("assistant", completion)] if isinstance(completion, str) else _turns(completion, "completion")
    )
    return prompt_turns + completion_turns


def _alpaca(data: dict[str, Any]) -> list[Turn]:
    instruction = _content_text(data.get("instruction"), "instruction")
    extra = _content_text(data.get("input"), "input")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [Turn("user", user), Turn("assistant", _content_text(data.get("output"), "output"))]


def _from_value(value: Any, key: str) -> Conversation:
    if isinstance(value, str):
        return Conversation(text=value)
    return Conversation(turns=tuple(_turns(value, key)))


def detect_format(data: dict[str, Any], field: str | None = None) -> str:
    if field is not None:
        return "field"
    if "messages" in data:
        return "chat"
    if "conversations" in data:
        return "sharegpt"
    if "prompt" in data and "completion" in data:
        return "prompt_completion"
    if "instruction" in data and "output" in data:
        return "alpaca"
    if "text" in data:
        return "text"
    return "unknown"


def to_conversation(data: dict[str, Any], field: str | None = None) -> Conversation:
    """The record's content; raises FormatError naming what was expected."""
    kind = detect_format(data, field)
    if kind == "field":
        if field not in data:
            raise FormatError(f"no field '{field}' (keys: {', '.join(sorted(data)) or 'none'})")
        conversation = _from_value(data[field], field)
    elif kind == "chat":
        conversation = Conversation(turns=tuple(_turns(data["messages"], "messages")))
    elif kind == "sharegpt":
        conversation = Conversation(turns=tuple(_turns(data["conversations"], "conversations")))
    elif kind == "prompt_completion":
        conversation = Conversation(turns=tuple(_prompt_completion(data["prompt"], data["completion"])))
    elif kind == "alpaca":
        conversation = Conversation(turns=tuple(_alpaca(data)))
    elif kind == "text":
        conversation = Conversation(text=_content_text(data["text"], "text"))
    else:
        keys = ", ".join(sorted(data)) or "none"
        raise FormatError(
            f"no recognisable text field (keys: {keys}); expected messages, prompt/completion, "
            "instruction/output or text, or pass --field NAME"
        )
    if conversation.is_chat and not any(turn.content.strip() for turn in conversation.turns):
        raise FormatError("empty conversation: every message is empty")
    if not conversation.is_chat and not (conversation.text or "").strip():
        raise FormatError("empty text")
    return conversation
