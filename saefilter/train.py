"""Train an SAE for a model with sae-lens's own trainer, fed by activations we collect ourselves.

Two steps, so one (slow) collection pass serves a sweep over several layers:
1. `collect_activations`: run the model once over a corpus, stopping at the deepest requested
   hook, and store residual vectors of every non-first position per hook (float16 .npy files).
2. `train_topk_sae`: train a sae-lens TopK SAE with `SAETrainer` from such a file, holding out a
   slice of tokens to report explained variance, L0 and dead latents honestly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saefilter.activations import length_batches, pad_batch
from saefilter.formats import Conversation
from saefilter.hooks import HookPoint
from saefilter.layers import residuals_at
from saefilter.model import LoadedModel
from saefilter.render import EncodedSample, encode, render


def encode_for_training(lm: LoadedModel, conversation: Conversation, max_tokens: int) -> EncodedSample | None:
    """All tokens but the first: an SAE must reconstruct prompts, responses and template alike."""
    from saefilter.formats import FormatError

    try:
        return encode(render(conversation, lm.tokenizer, "all"), lm.tokenizer, max_tokens)
    except FormatError:
        return None


def collect_activations(
    lm: LoadedModel,
    conversations: Sequence[Conversation],
    hooks: list[HookPoint],
    out_dir: Path,
    token_budget: int,
    max_tokens: int = 256,
    batch_size: int = 16,
    on_tokens: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Residual vectors at each hook for up to `token_budget` tokens, as [n, d_model] float16 .npy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    d_model = int(lm.model.config.hidden_size)
    encoded: list[EncodedSample] = []
    total = 0
    for conversation in conversations:
        sample = encode_for_training(lm, conversation, max_tokens)
        if sample is None:
            continue
        encoded.append(sample)
        total += sample.n_scored
        if total >= token_budget:
            break
    n_tokens = min(total, token_budget)
    paths = {h.name: out_dir / f"{h.name}.npy" for h in hooks}
    arrays = {
        name: np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n_tokens, d_model))
        for name, path in paths.items()
    }
    written = 0
    lengths = [len(s.input_ids) for s in encoded]
    for batch in length_batches(lengths, batch_size, batch_size * max_tokens):
        if written >= n_tokens:
            break
        samples = [encoded[i] for i in batch]
        ids, attention, scored = pad_batch(samples, lm.tokenizer.pad_token_id)
        captured = residuals_at(lm.model, hooks, ids.to(lm.device), attention.to(lm.device))
        mask = scored.to(lm.device)
        take = 0
        for name, resid in captured.items():
            rows = resid[mask].float().cpu().numpy()
            take = min(len(rows), n_tokens - written)
            arrays[name][written : written + take] = rows[:take]
        written += take
        if on_tokens:
            on_tokens(take)
    for array in arrays.values():
        array.flush()
    return paths


@dataclass(frozen=True)
class SAETrainingSettings:
    d_sae: int = 4096
    k: int = 32
    lr: float = 5e-4
    batch_size: int = 1024
    held_out_fraction: float = 0.05
    seed: int = 0
    aux_loss_coefficient: float = 1.0  # sae-lens's default: revives dead latents


@dataclass(frozen=True)
class SAEMetrics:
    train_tokens: int
    held_out_tokens: int
    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float  # latents that never fire on the held-out tokens


def _shuffled_batches(acts: np.ndarray, rows: np.ndarray, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled float32 batches from a float16 memmap; reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(rows)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chunk = np.sort(order[start : start + batch_size])  # sorted reads are kinder to the page cache
            yield torch.from_numpy(acts[chunk].astype(np.float32))


def split_rows(n: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)
    n_held = max(1, int(n * held_out_fraction))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


@torch.no_grad()
def evaluate_sae(sae: Any, acts: np.ndarray, rows: np.ndarray, batch_size: int = 8192) -> tuple[float, float, float, float]:
    """(explained variance, mse, L0, dead fraction) of an inference SAE on the given rows."""
    total_sq = resid_sq = 0.0
    l0_sum = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    mean = torch.from_numpy(acts[rows[: min(len(rows), 50_000)]].astype(np.float32)).mean(0)
    for start in range(0, len(rows), batch_size):
        x = torch.from_numpy(acts[rows[start : start + batch_size]].astype(np.float32))
        feats = sae.encode(x)
        recon = sae.decode(feats)
        resid_sq += float(((x - recon) ** 2).sum())
        total_sq += float(((x - mean) ** 2).sum())
        l0_sum += float((feats > 0).sum())
        fired |= (feats > 0).any(0)
    n = len(rows)
    return 1 - resid_sq / total_sq, resid_sq / (n * acts.shape[1]), l0_sum / n, 1 - float(fired.float().mean())


def train_topk_sae(
    acts_path: Path, hook: HookPoint, out_dir: Path, settings: SAETrainingSettings, model_name: str
) -> SAEMetrics:
    """Train with sae-lens's SAETrainer; save the inference SAE and its metrics to `out_dir`."""
    from sae_lens import SAE
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(settings.seed)
    acts = np.load(acts_path, mmap_mode="r")
    train_rows, held_rows = split_rows(len(acts), settings.held_out_fraction, settings.seed)
    d_in = int(acts.shape[1])
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=settings.d_sae,
        k=settings.k,
        normalize_activations="expected_average_only_in",
        aux_loss_coefficient=settings.aux_loss_coefficient,
    )
    sae_cfg.metadata.hook_name = hook.name
    sae_cfg.metadata.model_name = model_name
    sae = TopKTrainingSAE(sae_cfg)
    total = (len(train_rows) // settings.batch_size) * settings.batch_size
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=settings.batch_size,
        lr=settings.lr,
        lr_end=settings.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=max(1, total // settings.batch_size // 20),
        lr_decay_steps=total // settings.batch_size // 5,
        n_batches_for_norm_estimate=20,
        dead_feature_window=200,
        feature_sampling_window=500,
    )
    provider = _shuffled_batches(acts, train_rows, settings.batch_size, settings.seed)
    trained = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider).fit()
    out_dir.mkdir(parents=True, exist_ok=True)
    trained.save_inference_model(out_dir)
    inference = SAE.load_from_disk(out_dir)
    ev, mse, l0, dead = evaluate_sae(inference, acts, held_rows)
    metrics = SAEMetrics(len(train_rows), len(held_rows), round(ev, 4), round(mse, 6), round(l0, 2), round(dead, 4))
    (out_dir / "metrics.json").write_text(json.dumps({**asdict(metrics), "settings": asdict(settings)}, indent=1))
    return metrics
