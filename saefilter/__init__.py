"""saefilter: find fine-tuning samples whose SAE features sit close to harmful features.

The Python API (`load_scorer`, `score_file`, `prune_file`) lives in `saefilter.api` and is imported on
first use, so `import saefilter` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_scorer", "prune_file", "score_file"]

if TYPE_CHECKING:
    from saefilter.api import load_scorer, prune_file, score_file


def __getattr__(name: str) -> Any:
    if name in ("load_scorer", "score_file", "prune_file"):
        from saefilter import api

        return getattr(api, name)
    raise AttributeError(f"module 'saefilter' has no attribute {name!r}")
