"""Exact top-k: order, ties, chunks, bad k; search with CSLS and a reference set."""

import numpy as np
import pytest

from xmodal.retrieval import search, topk
from xmodal.retrieval.similarity import Scorer


def exact_scorer(scores: np.ndarray, chunk_size: int | None = None) -> Scorer:
    """Scorer whose dot scores are exactly ``scores``: identity queries against ``scores.T``."""
    return Scorer(np.eye(scores.shape[0]), scores.T, metric="dot", chunk_size=chunk_size)


def test_topk_orders_by_score_then_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]])
    val, idx = topk(exact_scorer(scores), k=3)
    np.testing.assert_array_equal(idx, [[1, 3, 0], [0, 1, 2]])
    np.testing.assert_array_equal(val, np.float32([[0.9, 0.9, 0.5], [0.0, 0.0, 0.0]]))
    assert idx.dtype == np.int64 and val.dtype == np.float32
    _, idx = topk(exact_scorer(scores), k=5)
    np.testing.assert_array_equal(idx, [[1, 3, 0, 2, 4], [0, 1, 2, 3, 4]])


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("k", [1, 4, 30])
def test_topk_matches_stable_argsort_with_many_ties(chunk_size, k):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(25, 30)).astype(np.float32)
    val, idx = topk(exact_scorer(scores, chunk_size), k)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(val, np.take_along_axis(scores, expected, axis=1))


@pytest.mark.parametrize("bad", [0, 6, -1, 2.0, True])
def test_topk_rejects_bad_k(bad):
    with pytest.raises(ValueError, match="k must"):
        topk(exact_scorer(np.zeros((2, 5))), bad)


def test_search_returns_each_query_its_match():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(50, 16)).astype(np.float32)
    queries = gallery[[7, 3, 41]] + 0.01 * rng.normal(size=(3, 16)).astype(np.float32)
    scores, idx = search(queries, gallery, k=4, csls_k=5)
    assert idx[:, 0].tolist() == [7, 3, 41]
    assert idx.shape == scores.shape == (3, 4) and (np.diff(scores, axis=1) <= 0).all()
