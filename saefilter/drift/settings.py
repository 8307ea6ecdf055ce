"""How `saefilter drift` is configured: one dataclass the CLI reads its flags' defaults from and the
API builds the same way. Light to import (the CLI does on every start)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriftSettings:
    pairs: str = "builtin"  # 'builtin' or a JSONL file of pairs
    split: str = "test"
    kinds: tuple[str, ...] = ()
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 16
    max_tokens: int = 512
    bootstrap: int = 2000
    seed: int = 0
    features: str = "embedded"  # the feature set whose provenance --pairs is checked against
    strict: bool = False  # refuse pairs that feature set was built or chosen on
