"""The one loop that runs encoded samples through the model: batches of similar length (sorted, so
padding stays small) under a record and a padded-token budget, right-padded.

Every pass over many samples (scoring, feature selection, evaluation, SAE training corpora) goes
through `run_in_batches`, with its own per-batch step: `sae.encoder.FeatureEncoder`'s methods, or
a residual capture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from saefilter.inputs.render import EncodedSample

Output = TypeVar("Output")


def length_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, each within both budgets."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batch: list[int] = []
    longest = 0
    for i in order:
        candidate_longest = max(longest, lengths[i])
        if batch and (len(batch) + 1 > batch_size or candidate_longest * (len(batch) + 1) > batch_tokens):
            yield batch
            batch, candidate_longest = [], lengths[i]
        batch.append(i)
        longest = candidate_longest
    if batch:
        yield batch


def pad_batch(samples: Sequence[EncodedSample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and scored-position mask, all [batch, longest]."""
    longest = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(samples), longest), dtype=torch.long)
    scored = torch.zeros((len(samples), longest), dtype=torch.bool)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        ids[row, :n] = torch.tensor(sample.input_ids, dtype=torch.long)
        attention[row, :n] = 1
        scored[row, :n] = torch.tensor(sample.scored, dtype=torch.bool)
    return ids, attention, scored


def run_in_batches(
    samples: Sequence[EncodedSample],
    step: Callable[[list[EncodedSample]], Output],
    batch_size: int,
    batch_tokens: int,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[int], Output]]:
    """(indices into `samples`, `step`'s output for those samples) per length batch; `on_progress`
    hears each batch's size once the caller has taken its output."""
    for batch in length_batches([len(s.input_ids) for s in samples], batch_size, batch_tokens):
        yield batch, step([samples[i] for i in batch])
        if on_progress:
            on_progress(len(batch))
