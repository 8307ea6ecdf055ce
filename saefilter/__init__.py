"""saefilter: find fine-tuning samples whose SAE features sit close to harmful features.

The Python API (`load_scorer`, `score_file`, `prune_file`, `build_features`, `measure_drift`) lives
in `saefilter.api`, and `DriftCallback` (drift during training, for a Hugging Face `Trainer`) in
`saefilter.runs.callback`; both are imported on first use, so `import saefilter` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saefilter.version import __version__

__all__ = ["DriftCallback", "__version__", "build_features", "load_scorer", "measure_drift", "prune_file", "score_file"]

if TYPE_CHECKING:
    from saefilter.api import build_features, load_scorer, measure_drift, prune_file, score_file
    from saefilter.runs.callback import DriftCallback


def __getattr__(name: str) -> Any:
    if name in __all__ and name not in ("DriftCallback", "__version__"):
        from saefilter import api

        return getattr(api, name)
    if name == "DriftCallback":
        from saefilter.runs.callback import DriftCallback

        return DriftCallback
    raise AttributeError(f"module 'saefilter' has no attribute {name!r}")
