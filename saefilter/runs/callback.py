"""Drift during training: a `transformers.TrainerCallback` (so also TRL's `SFTTrainer`) that measures
drift on built-in dev pairs every N steps, logs it beside the loss, and can stop training past a limit.

    from saefilter.runs.callback import DriftCallback
    trainer = SFTTrainer(..., callbacks=[DriftCallback(tokenizer, every=50, max_drift=0.05)])

The base margins are measured once, at the start of training, with the model as it is then.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from transformers import TrainerCallback

from saefilter.drift.pairs import load_pairs
from saefilter.drift.stats import drift_of
from saefilter.runs.drift import encode_pairs, side_logprobs

logger = logging.getLogger("saefilter.drift")


class DriftCallback(TrainerCallback):
    """Measures drift every `every` optimiser steps on `limit` dev pairs (spread over every kind).

    Each measurement is appended to `history` and to the trainer's `state.log_history` as
    {"step", "drift", "drift_low", "drift_high"}; past `max_drift` training stops after that step.
    """

    def __init__(
        self,
        tokenizer: Any,
        every: int = 50,
        max_drift: float | None = None,
        pairs: str = "builtin",
        split: str = "dev",
        limit: int | None = 48,
        batch_size: int = 16,
        max_tokens: int = 512,
        bootstrap: int = 500,
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1 step")
        chosen = load_pairs(pairs, split)
        if limit is not None and limit < len(chosen):
            picks = np.linspace(0, len(chosen) - 1, limit).round().astype(int)  # every kind, fixed order
            chosen = [chosen[i] for i in picks]
        self.pairs = chosen
        self.samples = encode_pairs(chosen, tokenizer, max_tokens)
        self.every, self.max_drift, self.batch_size, self.bootstrap = every, max_drift, batch_size, bootstrap
        self.base: tuple[np.ndarray, np.ndarray] | None = None
        self.history: list[dict[str, float]] = []

    def _measure(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        was_training = model.training
        model.eval()
        try:
            return side_logprobs(model, self.samples, self.batch_size)
        finally:
            model.train(was_training)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.base is None:
            self.base = self._measure(model)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every or self.base is None:
            return control
        harmful, benign = self._measure(model)
        d = drift_of(self.base[0], self.base[1], harmful, benign, n_boot=self.bootstrap, seed=state.global_step)
        entry = {"step": state.global_step, "drift": d.drift, "drift_low": d.interval[0], "drift_high": d.interval[1]}
        self.history.append(entry)
        state.log_history.append(dict(entry))
        logger.warning("step %d: drift %+.4f [%+.4f, %+.4f] on %d pairs", entry["step"], d.drift, *d.interval, d.n)
        if self.max_drift is not None and d.drift > self.max_drift:
            logger.warning("drift %+.4f is above %+.4f: stopping training", d.drift, self.max_drift)
            control.should_training_stop = True
        return control
