"""The LM head at chosen positions only: the full-vocabulary projection at every position is most of
a small model's forward cost when only a few positions' next-token distributions are needed (the
answer tokens for drift, the last prompt token for a judge)."""

from __future__ import annotations

from typing import Any


def backbone_and_head(model: Any) -> tuple[Any, Any, float | None]:
    """(decoder stack with its final norm, LM head, logit soft-cap or None); a PeftModel's LoRA layers
    stay in, since peft injects them into the wrapped model's own modules."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder(), inner.get_output_embeddings(), getattr(inner.config, "final_logit_softcapping", None)


def log_probs_at(model: Any, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
    """Float32 log-softmax over the vocabulary of the next token at (rows[i], cols[i]) of the batch."""
    import torch

    backbone, head, softcap = backbone_and_head(model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = head(hidden[rows, cols]).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1)


def right_padded(sequences: list[list[int]], pad_id: int = 0) -> tuple[Any, Any]:
    """(input_ids, attention_mask) of a batch, right-padded: real tokens keep positions 0..n-1."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, sequence in enumerate(sequences):
        ids[b, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[b, : len(sequence)] = 1
    return ids, mask
