"""Base and tuned models for drift: anything `--model` takes, or a PEFT (LoRA) adapter folder applied
on the base with `peft`. Tokenizers are compared before any weights load: a tuned model whose
tokenizer splits the pairs differently would be scored on other tokens, and its drift would be noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saefilter.errors import InputError
from saefilter.model.loading import load_model, load_tokenizer
from saefilter.quiet import quiet_third_party

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(spec: str) -> bool:
    return (Path(spec) / ADAPTER_CONFIG).is_file()


def tuned_tokenizer(spec: str, base_tokenizer: Any) -> Any:
    """The tokenizer a tuned model comes with; an adapter folder without one uses the base's."""
    if is_adapter(spec):
        has_own = any((Path(spec) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
        if not has_own:
            return base_tokenizer
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec)
    return load_tokenizer(spec)


def check_same_tokens(base_spec: str, spec: str, base_ids: list[list[int]], tuned_ids: list[list[int]]) -> None:
    """Refuse a tuned model whose tokenizer (or chat template) turns the pairs into other tokens."""
    for i, (a, b) in enumerate(zip(base_ids, tuned_ids, strict=True)):
        if a != b:
            at = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise InputError(
                f"{spec}: its tokenizer does not match {base_spec}'s (answer {i // 2} of the pairs differs "
                f"from token {at} on); drift compares the same tokens under both models, so BASE must be the "
                "model TUNED was fine-tuned from"
            )


def load_tuned(spec: str, base_spec: str, device: str, dtype: str, tokenizer: Any) -> Any:
    """The tuned model in eval mode: a full model folder, or `peft` applying an adapter on a fresh base."""
    if not is_adapter(spec):
        return load_model(spec, device=device, dtype=dtype, tokenizer=tokenizer).model
    try:
        from peft import PeftModel
    except ImportError as err:  # pragma: no cover - peft is a dependency
        raise InputError(f"{spec} is a PEFT adapter, but peft is not installed ({err})") from None
    base = load_model(base_spec, device=device, dtype=dtype, tokenizer=tokenizer).model
    try:
        with quiet_third_party():  # transformers' deprecation warnings, raised inside peft
            model = PeftModel.from_pretrained(base, spec)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise InputError(f"{spec}: could not apply the adapter on {base_spec}: {str(err).splitlines()[0]}") from None
    return model.eval()
