"""Per-feature proximity to the harmful set: pure numerics on decoder directions (NumPy + FAISS).

For every SAE latent i with unit decoder direction d_i, FAISS finds the k harmful directions h_j
with the largest cosine, and

    proximity_i = (1/k) * sum_{j in kNN(i)} w_j * kernel(cos(d_i, h_j))

with kernel "linear": max(0, c); "excess": max(0, c - b) / (1 - b); "sq-excess": the square of
"excess". b is the SAE's background cosine: the median, over all latents, of the cosine to their
nearest harmful direction. In a few hundred dimensions every latent has *some* harmful direction
at cosine ~0.1-0.2; the excess kernels count only proximity beyond that, so a sample's score is not
drowned by the background of its many unrelated features. A harmful latent itself always gets 1.

Harmful *directions* that are not latents (a probe's weight vector, `FeatureSet.directions`) add
w_m * max(0, cos(d_i, v_m)) each, linear kernel: they come with their own weight, chosen so that
their part of the score has the scale intended (`saefilter.features.direction`).

This does not depend on any sample, so it is computed once per (SAE, feature set, k); scoring a
sample is then a sparse dot product with its activations (see `scoring.sample`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

KERNELS = ("linear", "excess", "sq-excess")


@dataclass(frozen=True)
class FeatureProximity:
    proximity: np.ndarray  # [d_sae] float32
    neighbours: np.ndarray  # [d_sae, k + m] int64: positions in the harmful set (latents, then m directions)
    terms: np.ndarray  # [d_sae, k + m] float32: w_j * kernel(cos) / k, then the directions'; rows sum to `proximity`
    background: float = 0.0  # median nearest-harmful cosine over all latents
    n_directions: int = 0

    @property
    def k(self) -> int:
        return int(self.neighbours.shape[1]) - self.n_directions


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


@contextmanager
def faiss_single_thread() -> Iterator[None]:
    """Run FAISS on one OpenMP thread for the duration.

    With torch imported, FAISS and torch each bring an OpenMP runtime; their thread pools fight
    and a flat search was measured ~4.5x slower on a 2-core machine. One thread avoids the fight,
    and these searches (d_sae queries against a few hundred vectors) are small anyway.
    See scripts/benchmark_faiss_omp.py.
    """
    import faiss  # here, not at the top: the CLI's start (and a cached `check`) never needs it

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def harmful_index(harmful_directions: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product index over unit harmful directions (inner product = cosine)."""
    import faiss

    directions = unit_rows(harmful_directions)
    index = faiss.IndexFlatIP(directions.shape[1])
    index.add(directions)
    return index


def apply_kernel(cosines: np.ndarray, kernel: str, background: float) -> np.ndarray:
    if kernel == "linear":
        return np.maximum(cosines, 0.0)
    excess = np.maximum(cosines - background, 0.0) / max(1.0 - background, 1e-6)
    if kernel == "excess":
        return excess
    if kernel == "sq-excess":
        return excess**2
    raise ValueError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNELS)}")


def clipped_cosines(decoder: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """[d_sae, m] max(0, cos(decoder row i, direction j)): each latent's proximity to each direction."""
    return np.maximum(unit_rows(decoder) @ unit_rows(directions).T, 0.0)


def feature_proximity(
    decoder: np.ndarray, harmful: list[int], weights: list[float], k: int, kernel: str = "linear",
    directions: np.ndarray | None = None, direction_weights: list[float] | None = None,
) -> FeatureProximity:
    """Proximity of every decoder row to its k nearest harmful decoder rows, plus to each harmful
    direction (positions len(harmful).. in `neighbours`)."""
    if not harmful:
        raise ValueError("the harmful feature set is empty")
    if k < 1:
        raise ValueError("k must be at least 1")
    k = min(k, len(harmful))
    unit = unit_rows(decoder)
    index = harmful_index(unit[harmful])
    with faiss_single_thread():
        cosines, neighbours = index.search(unit, k)
    background = float(np.median(cosines[:, 0]))
    weight_of = np.asarray(weights, dtype=np.float32)
    terms = (weight_of[neighbours] * apply_kernel(cosines, kernel, background) / k).astype(np.float32)
    neighbours = neighbours.astype(np.int64)
    if directions is not None and len(directions):
        direction_terms = clipped_cosines(decoder, directions) * np.asarray(direction_weights, np.float32)
        positions = np.broadcast_to(np.arange(len(harmful), len(harmful) + len(directions)), direction_terms.shape)
        terms = np.concatenate([terms, direction_terms.astype(np.float32)], axis=1)
        neighbours = np.concatenate([neighbours, positions.astype(np.int64)], axis=1)
    n_directions = 0 if directions is None else len(directions)
    return FeatureProximity(terms.sum(axis=1), neighbours, terms, background, n_directions)
