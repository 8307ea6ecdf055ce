"""The one shape of progress reporting every run takes, so the CLI's bars and a notebook's silence
plug into any of them the same way.

- `ProgressFn`: advance(n) after n more items are done;
- `ProgressFactory`: progress(label, total) -> a context manager yielding an advance function
  (the CLI draws a rich bar per call; `no_progress` draws nothing);
- `StatusFn`: status(message) -> a context manager shown while a slow step without a count runs
  (loading a model); `no_status` shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

ProgressFn = Callable[[int], None]
ProgressFactory = Callable[[str, int], AbstractContextManager[ProgressFn]]
StatusFn = Callable[[str], AbstractContextManager[Any]]


def no_progress(_label: str, _total: int) -> AbstractContextManager[ProgressFn]:
    return nullcontext(lambda _n: None)


def no_status(_message: str) -> AbstractContextManager[Any]:
    return nullcontext()
