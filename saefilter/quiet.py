"""Keep third-party progress bars and warnings out of saefilter's output: the user sees our status
lines and errors, not transformers' "Loading weights" or GGUF de-quantisation bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_show_third_party = False


def show_third_party_output(show: bool) -> None:
    """`--verbose`: let transformers' logs and bars through, for when loading a model goes wrong."""
    global _show_third_party
    _show_third_party = show


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence transformers' and huggingface_hub's progress bars and info/warning logs for the duration,
    and what else they write to stderr (the GGUF de-quantisation bar is a plain tqdm that no setting
    turns off). Exceptions still propagate. A no-op under `--verbose`."""
    import contextlib
    import io

    if _show_third_party:
        yield
        return

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as log  # the module itself: `transformers.logging` scans every model
    verbosity, bars_were_on = log.get_verbosity(), log.is_progress_bar_enabled()
    hub_bars_were_off = are_progress_bars_disabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    disable_progress_bars()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        log.set_verbosity(verbosity)
        if bars_were_on:
            log.enable_progress_bar()
        if not hub_bars_were_off:
            enable_progress_bars()
