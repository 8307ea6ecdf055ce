"""Train an SAE for a model with sae-lens's own trainer, fed by activations we collect ourselves.

Two steps, so one (slow) collection pass serves a sweep over several layers:
1. `collect_activations`: run the model once over a corpus, stopping at the deepest requested
   hook, and append residual vectors of every non-first position per hook to a float16 store that
   a later run resumes (a 1.5B model on a CPU takes hours: runs can stop and go on).
2. `train_topk_sae`: train a sae-lens TopK SAE with `SAETrainer` from such rows, holding out a
   slice of tokens to report explained variance, L0 and dead latents honestly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saefilter.inputs.formats import Conversation
from saefilter.inputs.render import EncodedSample, encode, render
from saefilter.model.activations import pad_batch, run_in_batches
from saefilter.model.hooks import HookPoint
from saefilter.model.layers import residuals_at
from saefilter.model.loading import LoadedModel


def encode_for_training(lm: LoadedModel, conversation: Conversation, max_tokens: int) -> EncodedSample | None:
    """All tokens but the first: an SAE must reconstruct prompts, responses and template alike."""
    from saefilter.inputs.formats import FormatError

    try:
        return encode(render(conversation, lm.tokenizer, "all"), lm.tokenizer, max_tokens)
    except FormatError:
        return None


STORE_FILE = "store.json"
FLOAT16_MAX = float(np.finfo(np.float16).max)


def fits_float16(hook_rows: Iterable[np.ndarray]) -> np.ndarray:
    """Tokens whose residual fits float16 at every hook. Some models (Gemma 3) put a few "massive
    activation" tokens above 65,504 mid-sequence; they are left out of the store (and counted),
    for every hook alike, so the hooks' rows stay aligned."""
    keep = None
    for rows in hook_rows:
        fits = np.abs(rows).max(axis=1) <= FLOAT16_MAX if len(rows) else np.zeros(0, bool)
        keep = fits if keep is None else keep & fits
    return keep if keep is not None else np.zeros(0, bool)


def store_rows(out_dir: Path, hook_name: str) -> np.ndarray:
    """The collected [n, d_model] float16 rows of one hook, memory-mapped (see `collect_activations`)."""
    meta = json.loads((out_dir / STORE_FILE).read_text())
    return np.memmap(out_dir / f"{hook_name}.f16", dtype=np.float16, mode="r", shape=(meta["tokens"], meta["d_model"]))


def _write_store_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    staging = out_dir / f"{STORE_FILE}.tmp"
    staging.write_text(json.dumps(meta, indent=1))
    staging.replace(out_dir / STORE_FILE)  # atomic: a crash leaves the previous, consistent count


def collect_activations(
    lm: LoadedModel,
    conversations: Sequence[Conversation],
    hooks: list[HookPoint],
    out_dir: Path,
    token_budget: int,
    max_tokens: int = 256,
    batch_size: int = 16,
    chunk_samples: int = 256,
    on_tokens: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Residual vectors at each hook for at least `token_budget` tokens, appended to OUT/<hook>.f16.

    Resumable: samples are taken in corpus order, `chunk_samples` at a time; after each chunk the
    rows are flushed and OUT/store.json records how many chunks and rows are complete. A run that
    is killed loses at most the chunk in flight; the next run with the same settings truncates any
    partial rows and continues, and a larger budget extends an earlier store. Read the rows back
    with `store_rows`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    d_model = int(lm.model.config.hidden_size)
    settings = {"model": lm.name, "hooks": [h.name for h in hooks], "max_tokens": max_tokens, "d_model": d_model,
                "chunk_samples": chunk_samples}
    meta_path = out_dir / STORE_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {**settings, "chunks": 0, "tokens": 0}
    if {k: meta.get(k) for k in settings} != settings:
        raise ValueError(f"{out_dir} holds activations collected with other settings "
                         f"({ {k: meta.get(k) for k in settings} }); use another folder")
    paths = {h.name: out_dir / f"{h.name}.f16" for h in hooks}
    row_bytes = d_model * np.dtype(np.float16).itemsize
    handles = {}
    for name, path in paths.items():
        handle = path.open("r+b" if path.exists() else "w+b")
        handle.truncate(meta["tokens"] * row_bytes)  # drop rows of a chunk that never completed
        handle.seek(0, 2)
        handles[name] = handle
    def capture(batch: list[EncodedSample]) -> dict[str, np.ndarray]:
        """Each hook's residuals at the batch's scored positions, float32 on the CPU."""
        ids, attention, scored = pad_batch(batch, lm.tokenizer.pad_token_id)
        captured = residuals_at(lm.model, hooks, ids.to(lm.device), attention.to(lm.device))
        return {name: resid[scored.to(lm.device)].float().cpu().numpy() for name, resid in captured.items()}

    try:
        for start in range(meta["chunks"] * chunk_samples, len(conversations), chunk_samples):
            if meta["tokens"] >= token_budget:
                break
            encoded = [s for c in conversations[start : start + chunk_samples] if (s := encode_for_training(lm, c, max_tokens))]
            rows = {name: [] for name in paths}
            for _, selected in run_in_batches(encoded, capture, batch_size, batch_size * max_tokens):
                keep = fits_float16(selected.values())
                meta["out_of_range_tokens"] = meta.get("out_of_range_tokens", 0) + int((~keep).sum())
                for name, resid in selected.items():
                    rows[name].append(resid[keep].astype(np.float16))
            n_new = 0
            for name, parts in rows.items():
                block = np.concatenate(parts) if parts else np.zeros((0, d_model), np.float16)
                handles[name].write(block.tobytes())
                handles[name].flush()
                os.fsync(handles[name].fileno())
                n_new = len(block)
            meta = {**meta, "chunks": meta["chunks"] + 1, "tokens": meta["tokens"] + n_new}
            _write_store_meta(out_dir, meta)
            if on_tokens:
                on_tokens(n_new)
    finally:
        for handle in handles.values():
            handle.close()
    _write_store_meta(out_dir, meta)
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
    epochs: int = 1  # passes over the training rows (more steps when tokens are few: fewer dead latents)
    # Leave out rows whose norm exceeds this many times the median (None: keep all). Qwen2.5 has
    # "massive activation" tokens (template and sink tokens, norms ~100x the median) that would
    # dominate the reconstruction loss; scoring rarely sees them (response tokens only).
    outlier_norm_factor: float | None = None


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


def rows_within_norm(acts: np.ndarray, rows: np.ndarray, factor: float, chunk: int = 65536) -> tuple[np.ndarray, float]:
    """`rows` whose L2 norm is at most `factor` x the median norm of all rows, and that limit."""
    norms = np.concatenate([np.linalg.norm(acts[start : start + chunk].astype(np.float32), axis=1)
                            for start in range(0, len(acts), chunk)]) if len(acts) else np.zeros(0)
    limit = float(factor * np.median(norms)) if len(norms) else 0.0
    return rows[norms[rows] <= limit], limit


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
    acts: np.ndarray, hook: HookPoint, out_dir: Path, settings: SAETrainingSettings, model_name: str
) -> SAEMetrics:
    """Train with sae-lens's SAETrainer on [n, d_model] rows (`store_rows`); save the inference SAE
    and its metrics to `out_dir`."""
    from sae_lens import SAE
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(settings.seed)
    train_rows, held_rows = split_rows(len(acts), settings.held_out_fraction, settings.seed)
    outliers = {}
    if settings.outlier_norm_factor is not None:
        n_before = len(train_rows) + len(held_rows)
        train_rows, limit = rows_within_norm(acts, train_rows, settings.outlier_norm_factor)
        held_rows, _ = rows_within_norm(acts, held_rows, settings.outlier_norm_factor)
        outliers = {"outlier_norm_limit": round(limit, 3), "outlier_rows_left_out": n_before - len(train_rows) - len(held_rows)}
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
    total = (len(train_rows) // settings.batch_size) * settings.batch_size * settings.epochs
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
    (out_dir / "metrics.json").write_text(json.dumps({**asdict(metrics), **outliers, "settings": asdict(settings)}, indent=1))
    return metrics
