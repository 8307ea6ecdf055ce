"""Pure numerics: proximity of decoder directions, sample scores and their explanations."""

import faiss
import numpy as np
import pytest
from reference_scoring import aggregate, score_sample

from saefilter.outputs.score_files import ranks_and_percentiles
from saefilter.sae.geometry import faiss_single_thread, feature_proximity, unit_rows


def orthonormal(n: int, d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, n)))
    return q.T.astype(np.float32)


def decoder_with_near_and_orthogonal() -> np.ndarray:
    """Row 0 harmful; row 1 at cosine 0.9 to it; row 2 orthogonal; rows scaled arbitrarily."""
    e = orthonormal(4, 16)
    near = 0.9 * e[0] + np.sqrt(1 - 0.81) * e[1]
    return np.stack([3.0 * e[0], 0.5 * near, 7.0 * e[2], e[3]]).astype(np.float32)


def test_proximity_is_the_cosine_to_the_nearest_harmful_direction():
    prox = feature_proximity(decoder_with_near_and_orthogonal(), harmful=[0], weights=[1.0], k=1)
    np.testing.assert_allclose(prox.proximity, [1.0, 0.9, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(prox.terms.sum(axis=1), prox.proximity, atol=1e-7)


def test_knn_averages_weighted_clamped_cosines():
    e = orthonormal(3, 8)
    decoder = np.stack([e[0], e[1], 0.6 * e[0] + 0.8 * e[1], -e[0]])
    prox = feature_proximity(decoder, harmful=[0, 1], weights=[1.0, 0.5], k=2)
    np.testing.assert_allclose(prox.proximity, [0.5, 0.25, (0.6 + 0.8 * 0.5) / 2, 0.0], atol=1e-6)
    assert prox.k == 2
    assert feature_proximity(decoder, harmful=[0], weights=[1.0], k=5).k == 1  # k capped at the set size


def test_close_feature_raises_the_score_more_than_an_orthogonal_one():
    prox = feature_proximity(decoder_with_near_and_orthogonal(), harmful=[0], weights=[1.0], k=1)
    base = np.zeros((3, 4), dtype=np.float32)
    base[:, 3] = 1.0
    near, orthogonal = base.copy(), base.copy()
    near[1, 1] = 2.0
    orthogonal[1, 2] = 2.0
    s_base = score_sample(base, prox, "max", 1).score
    s_near = score_sample(near, prox, "max", 1).score
    s_orth = score_sample(orthogonal, prox, "max", 1).score
    assert s_near > s_base and s_near > s_orth
    assert s_orth == pytest.approx(0.0, abs=1e-6) and s_near == pytest.approx(2.0 * 0.9 / 3.0, rel=1e-5)


def test_contributions_sum_to_the_score_and_name_the_harmful_feature():
    rng = np.random.default_rng(1)
    decoder = rng.normal(size=(40, 16)).astype(np.float32)
    prox = feature_proximity(decoder, harmful=[3, 7, 11], weights=[1.0, 2.0, 1.0], k=2)
    acts = np.maximum(rng.normal(size=(5, 40)), 0).astype(np.float32)
    result = score_sample(acts, prox, "mean", 3, top_n=3)
    assert sum(s.contribution for s in result.top_features) == pytest.approx(result.score, rel=1e-6)
    acts_one = np.zeros((2, 40), np.float32)
    acts_one[1, 7] = 5.0
    only = score_sample(acts_one, prox, "max", 3)
    assert only.top_features[0][0] == 1  # position of index 7 in the harmful set
    assert only.top_tokens[0][0] == 1  # the token where it fired


def test_aggregation_and_empty_samples():
    acts = np.array([[1.0, 0.0], [3.0, 2.0]], np.float32)
    np.testing.assert_allclose(aggregate(acts, "max"), [3.0, 2.0])
    np.testing.assert_allclose(aggregate(acts, "mean"), [2.0, 1.0])
    prox = feature_proximity(np.eye(2, dtype=np.float32), [0], [1.0], 1)
    assert score_sample(np.zeros((3, 2), np.float32), prox, "max", 1).score == 0.0


def test_unit_rows_keeps_zero_rows_zero():
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_faiss_runs_single_threaded_during_search_and_restores_after():
    """The mitigation for the torch/FAISS OpenMP clash (timing lives in scripts/benchmark_faiss_omp.py)."""
    before = faiss.omp_get_max_threads()
    with faiss_single_thread():
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


def test_ranks_and_percentiles():
    ranks, percentiles = ranks_and_percentiles(np.array([0.2, 0.9, 0.2, 0.5]))
    assert ranks.tolist() == [3, 1, 4, 2]  # ties: earlier line ranks first
    assert percentiles.tolist() == [50.0, 100.0, 50.0, 75.0]


def test_excess_kernels_zero_the_background_and_keep_harmful_latents_at_one():
    rng = np.random.default_rng(4)
    decoder = rng.normal(size=(200, 24)).astype(np.float32)
    linear = feature_proximity(decoder, [0, 1], [1.0, 1.0], 1, "linear")
    excess = feature_proximity(decoder, [0, 1], [1.0, 1.0], 1, "excess")
    squared = feature_proximity(decoder, [0, 1], [1.0, 1.0], 1, "sq-excess")
    assert excess.background == pytest.approx(np.median(linear.proximity), abs=1e-6)
    assert (excess.proximity == 0).mean() >= 0.5  # at or below the median: nothing
    np.testing.assert_allclose(excess.proximity[:2], 1.0, atol=1e-6)
    np.testing.assert_allclose(squared.proximity, excess.proximity**2, atol=1e-6)
    with pytest.raises(ValueError, match="unknown kernel"):
        feature_proximity(decoder, [0], [1.0], 1, "cubic")

