"""Mean per-token log-probability of a chat's last assistant answer under a causal LM.

Only the positions that predict answer tokens go through the LM head: the full-vocabulary
log-softmax at every position is most of the cost of a plain forward on a small model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from saefilter.inputs.formats import Conversation, Turn
from saefilter.inputs.render import EncodedSample, RenderedText, encode, render
from saefilter.model.head import log_probs_at, right_padded


def chat(prompt: str, answer: str) -> Conversation:
    return Conversation(turns=(Turn("user", prompt), Turn("assistant", answer)))


def encode_last_answer(conversation: Conversation, tokenizer: Any, max_tokens: int) -> EncodedSample:
    """Token ids with only the last assistant turn (its content and end-of-turn marker) marked."""
    rendered = render(conversation, tokenizer)
    last = RenderedText(rendered.text, rendered.scored_spans[-1:], rendered.add_special_tokens)
    return encode(last, tokenizer, max_tokens)


def mean_answer_logprobs(model: Any, samples: Sequence[EncodedSample], batch_size: int = 16) -> np.ndarray:
    """One mean log-probability per sample, in order: batches of similar length, right-padded."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids))
    out = np.zeros(len(samples), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [samples[i] for i in order[start : start + batch_size]]
            ids, mask = right_padded([s.input_ids for s in batch])
            rows, cols = [], []
            for b, sample in enumerate(batch):
                positions = [t for t, scored in enumerate(sample.scored) if scored]
                rows += [b] * len(positions)
                cols += positions
            ids, row_t, col_t = ids.to(device), torch.tensor(rows, device=device), torch.tensor(cols, device=device)
            # the position before a token predicts it
            log_probs = log_probs_at(model, ids, mask.to(device), row_t, col_t - 1)
            token_lp = log_probs.gather(1, ids[row_t, col_t].unsqueeze(1))[:, 0]
            sums = torch.zeros(len(batch), dtype=torch.float64, device=device).index_add_(0, row_t, token_lp.double())
            counts = torch.bincount(row_t, minlength=len(batch)).double()
            for b, i in enumerate(order[start : start + batch_size]):
                out[i] = float(sums[b] / counts[b])
    return out
