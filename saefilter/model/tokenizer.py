"""The scoring tokenizer: transformers' fast tokenizer as it resolved, kept so later starts skip transformers.

Importing transformers takes about a second, which the pre-commit hook pays on every commit. Scoring
needs only the Rust tokenizer (ids and character offsets), the chat template and a decoder, so the
first load of a model folder goes through transformers and keeps what it resolved: the backend
tokenizer with its post-processor and added tokens, the template and the special tokens the template
sees. Later loads rebuild it with `tokenizers` and jinja2 alone. A snapshot is written only after it
renders, encodes and decodes a set of probe chats exactly as transformers did; where it does not
(another template engine feature, a decoder clean-up), the folder stays with transformers, and that
verdict is kept too. The key covers the folder's files and the versions of transformers, tokenizers
and jinja2, so an upgrade or an edited tokenizer file makes a fresh snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SNAPSHOT_FORMAT = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
VERSIONED = ("transformers", "tokenizers", "jinja2")

# Chats the snapshot must render, encode and decode exactly as transformers does before it is used.
PROBE_CHATS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "Hello there!"},),
    ({"role": "user", "content": "How do I boil an egg?"},
     {"role": "assistant", "content": " Put it in boiling water for\n\n9 minutes.  Then cool it. "}),
    ({"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another, in French?"},
     {"role": "assistant", "content": "Vert — «vert». 緑. 🙂"}),
    ({"role": "user", "content": "Quote <|im_start|> and </s> and {{ x }} and {% raw %} literally."},
     {"role": "assistant", "content": "```python\ndef f(x):\n\treturn x ** 2\n```"}),
)


@dataclass(frozen=True)
class TokenizerSnapshot:
    """What scoring needs of a fast tokenizer, as transformers resolved it."""

    backend: str  # tokenizers' JSON of the backend, post-processor and added tokens included
    split_special_tokens: bool
    chat_template: str | None
    template_tokens: dict[str, Any]  # the special tokens transformers hands the template (bos_token, ...)
    pad_token: str
    pad_token_id: int
    eos_token: str | None

    def to_json(self) -> dict[str, Any]:
        return {"format": SNAPSHOT_FORMAT, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenizerSnapshot:
        return cls(**{k: v for k, v in data.items() if k != "format"})


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """JSON as chat templates expect it: not HTML-escaped, unlike jinja2's own filter."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def compile_template(source: str) -> Any:
    """A chat template in jinja2's immutable sandbox, with the settings and helpers chat templates are
    written against (trim and lstrip blocks, loop controls, `tojson`, `raise_exception`, `strftime_now`)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


class ScoringTokenizer:
    """The part of a transformers fast tokenizer that rendering, encoding and explanations use."""

    is_fast = True

    def __init__(self, snapshot: TokenizerSnapshot):
        from tokenizers import Tokenizer

        self.snapshot = snapshot
        self._backend = Tokenizer.from_str(snapshot.backend)
        self._backend.no_padding()
        self._backend.no_truncation()
        self._backend.encode_special_tokens = snapshot.split_special_tokens
        self._template = compile_template(snapshot.chat_template) if snapshot.chat_template else None

    @property
    def chat_template(self) -> str | None:
        return self.snapshot.chat_template

    @property
    def pad_token_id(self) -> int:
        return self.snapshot.pad_token_id

    @property
    def pad_token(self) -> str:
        return self.snapshot.pad_token

    @property
    def eos_token(self) -> str | None:
        return self.snapshot.eos_token

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        if tokenize or self._template is None:
            raise ValueError("the scoring tokenizer renders chats to text with the model's own template only")
        return self._template.render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                     add_generation_prompt=add_generation_prompt, **self.snapshot.template_tokens)

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 truncation: bool = False) -> dict[str, list[Any]]:
        if truncation:
            raise ValueError("the scoring tokenizer does not truncate; callers cut the ids themselves")
        encoding = self._backend.encode(text, add_special_tokens=add_special_tokens)
        out: dict[str, list[Any]] = {"input_ids": list(encoding.ids), "attention_mask": list(encoding.attention_mask)}
        if return_offsets_mapping:
            out["offset_mapping"] = [tuple(o) for o in encoding.offsets]
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids: list[int] | int, skip_special_tokens: bool = False) -> str:
        return self._backend.decode([ids] if isinstance(ids, int) else list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: list[list[int]]) -> list[str]:
        return self._backend.decode_batch(sequences, skip_special_tokens=False)


def snapshot_of(tokenizer: Any) -> TokenizerSnapshot | None:
    """The snapshot of a loaded transformers tokenizer, or None where it cannot be one."""
    template = getattr(tokenizer, "chat_template", None)
    if not getattr(tokenizer, "is_fast", False) or (template is not None and not isinstance(template, str)) \
            or tokenizer.pad_token_id is None:
        return None
    try:
        backend = tokenizer.backend_tokenizer.to_str()
    except (AttributeError, TypeError, ValueError, RuntimeError):  # a backend that cannot be serialised
        return None
    return TokenizerSnapshot(
        backend=backend,
        split_special_tokens=bool(getattr(tokenizer, "split_special_tokens", False)),
        chat_template=template,
        template_tokens=dict(tokenizer.special_tokens_map),
        pad_token=str(tokenizer.pad_token),
        pad_token_id=int(tokenizer.pad_token_id),
        eos_token=None if tokenizer.eos_token is None else str(tokenizer.eos_token),
    )


def _outcome(call: Any) -> tuple[str, Any]:
    """The rendered text, or the kind of error: a template may refuse a chat (roles must alternate,
    no system role), and then both tokenizers must refuse it alike."""
    from jinja2.exceptions import TemplateError

    try:
        return "ok", call()
    except (TemplateError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        return "raises", type(err).__name__


def disagreement(reference: Any, candidate: ScoringTokenizer) -> str | None:
    """Where `candidate` renders, encodes or decodes the probe chats or any single token unlike
    `reference` (transformers' tokenizer); None when it agrees everywhere."""
    texts = [PROBE_CHATS[3][0]["content"]]
    if candidate.chat_template:
        for chat in PROBE_CHATS:
            for n in range(1, len(chat) + 1):
                for prompt in (False, True):
                    messages = [dict(m) for m in chat[:n]]
                    want = _outcome(lambda m=messages, p=prompt: reference.apply_chat_template(
                        m, tokenize=False, add_generation_prompt=p))
                    got = _outcome(lambda m=messages, p=prompt: candidate.apply_chat_template(m, add_generation_prompt=p))
                    if want != got:
                        return f"chat template on a {n}-turn chat (generation prompt {prompt})"
                    if want[0] == "ok":
                        texts.append(want[1])
    for text in texts:
        for special in (False, True):
            want = reference(text, add_special_tokens=special, return_offsets_mapping=True, truncation=False)
            got = candidate(text, add_special_tokens=special, return_offsets_mapping=True)
            if list(want["input_ids"]) != got["input_ids"] or [tuple(o) for o in want["offset_mapping"]] != got["offset_mapping"]:
                return f"ids or offsets of a probe text (special tokens {special})"
            if reference.decode(got["input_ids"]) != candidate.decode(got["input_ids"]):
                return "decoding a probe text"
    singles = [[i] for i in range(len(reference))]
    if reference.batch_decode(singles) != candidate.batch_decode(singles):
        return "decoding a single token"
    return None


def _versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in VERSIONED:
        try:
            found.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return found


def snapshot_key(folder: Path) -> str:
    """Changes when any non-weight file of the folder or a package the tokenizer depends on changes."""
    digest = hashlib.sha256(f"{SNAPSHOT_FORMAT}\0{folder.resolve()}".encode())
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
            stat = path.stat()
            digest.update(f"\0{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    for entry in _versions():
        digest.update(f"\0{entry}".encode())
    return digest.hexdigest()[:32]


def snapshot_file(folder: Path, cache: Path) -> Path:
    return cache / "tokenizers" / f"{snapshot_key(folder)}.json"


def read_snapshot(path: Path) -> TokenizerSnapshot | str | None:
    """The snapshot kept at `path`, the reason a folder stays with transformers, or None (not yet
    decided, or an unreadable file: decided again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != SNAPSHOT_FORMAT:
            return None
        return str(data["transformers_only"]) if "transformers_only" in data else TokenizerSnapshot.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_snapshot(path: Path, outcome: TokenizerSnapshot | str) -> None:
    """Kept atomically (two hooks may start at once); a cache that cannot be written only costs time."""
    data = outcome.to_json() if isinstance(outcome, TokenizerSnapshot) else {
        "format": SNAPSHOT_FORMAT, "transformers_only": outcome}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_text(json.dumps(data), encoding="utf-8")
        os.replace(staging, path)
    except OSError:
        pass


def verified_snapshot(reference: Any) -> TokenizerSnapshot | str:
    """The snapshot of `reference`, or why the folder stays with transformers."""
    snapshot = snapshot_of(reference)
    if snapshot is None:
        return "not a fast tokenizer with one chat template and a pad token"
    try:
        candidate = ScoringTokenizer(snapshot)
    except Exception as err:  # noqa: BLE001 (tokenizers raises bare Exception; jinja2 a syntax error for a tag only transformers defines)
        return f"snapshot does not load: {type(err).__name__}"
    differs = disagreement(reference, candidate)
    return snapshot if differs is None else f"differs from transformers: {differs}"
