"""Similarity functions and the chunked Scorer, with CSLS: hand cases and dense references."""

import numpy as np
import pytest

from xmodal.retrieval import topk
from xmodal.retrieval.similarity import SIMILARITIES, Scorer, default_chunk_size, pairwise, reference_means


def collect(scorer: Scorer) -> np.ndarray:
    parts = []
    expected_start = 0
    for rows, s in scorer.chunks():
        assert rows.start == expected_start
        assert s.dtype == np.float32 and s.shape == (rows.stop - rows.start, scorer.shape[1])
        parts.append(s)
        expected_start = rows.stop
    assert expected_start == scorer.shape[0]
    return np.concatenate(parts)


def dense_csls(q: np.ndarray, g: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    s = pairwise(q, g, metric).astype(np.float64)
    r_g = np.sort(s, axis=1)[:, -min(k, s.shape[1]) :].mean(axis=1)
    r_q = np.sort(s, axis=0)[-min(k, s.shape[0]) :].mean(axis=0)
    return 2 * s - r_g[:, None] - r_q[None, :]


# --- pairwise ---------------------------------------------------------------------------


def test_pairwise_cosine_and_dot_by_hand():
    q = np.array([[3.0, 4.0], [0.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.0, 2.0], [-6.0, -8.0]])
    np.testing.assert_allclose(pairwise(q, g, "dot"), [[3.0, 8.0, -50.0], [0.0, 0.0, 0.0]], rtol=1e-6)
    cos = pairwise(q, g)  # zero query row stays zero, no NaN
    np.testing.assert_allclose(cos, [[0.6, 0.8, -1.0], [0.0, 0.0, 0.0]], rtol=1e-6)
    assert cos.dtype == np.float32


def test_distance_similarities_by_hand():
    q = np.array([[0.0, 0.0], [1.0, 1.0]])
    g = np.array([[3.0, 4.0], [1.0, 1.0], [-1.0, 2.0]])
    np.testing.assert_allclose(
        pairwise(q, g, "euclidean"), [[-5.0, -np.sqrt(2), -np.sqrt(5)], [-np.sqrt(13), 0.0, -np.sqrt(5)]], rtol=1e-6
    )
    np.testing.assert_allclose(pairwise(q, g, "manhattan"), [[-7.0, -2.0, -3.0], [-5.0, 0.0, -3.0]], rtol=1e-6)
    assert pairwise(q, g, "manhattan").dtype == pairwise(q, g, "euclidean").dtype == np.float32


def test_similarities_can_disagree_on_the_nearest_item():
    q = np.array([[1.0, 0.0]])
    g = np.array([[10.0, 1.0], [0.9, 0.3]])  # the same direction far away vs close but turned
    assert [int(np.argmax(pairwise(q, g, m))) for m in SIMILARITIES] == [0, 0, 1, 1]


def test_pairwise_unknown_metric():
    with pytest.raises(ValueError, match=r"unknown metric 'l2'; known metrics: cosine, dot, euclidean, manhattan"):
        pairwise(np.ones((1, 2)), np.ones((1, 2)), "l2")


def test_pairwise_dimension_mismatch():
    with pytest.raises(ValueError, match="queries have dimension 384 but the gallery has 1280"):
        pairwise(np.ones((2, 384)), np.ones((3, 1280)))


# --- Scorer -----------------------------------------------------------------------------


def test_default_chunk_size_is_about_64mb():
    assert default_chunk_size(1000) == 64 * 2**20 // 4000
    assert default_chunk_size(10**9) == 1
    scorer = Scorer(np.ones((3, 2)), np.ones((1000, 2)))
    assert scorer.chunk_size == default_chunk_size(1000)
    assert scorer.shape == (3, 1000)


@pytest.mark.parametrize("metric", SIMILARITIES)
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunked_scores_equal_dense(metric, chunk_size):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(53, 16)), rng.normal(size=(41, 16))
    got = collect(Scorer(q, g, metric=metric, chunk_size=chunk_size))
    np.testing.assert_allclose(got, pairwise(q, g, metric), atol=1e-5)


@pytest.mark.parametrize("metric", SIMILARITIES)
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("csls_k", [1, 3, 10, 500])  # 500 is clipped to both set sizes
def test_chunked_csls_equals_dense_reference(metric, chunk_size, csls_k):
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(53, 16)), rng.normal(size=(41, 16))
    got = collect(Scorer(q, g, metric=metric, csls_k=csls_k, chunk_size=chunk_size))
    np.testing.assert_allclose(got, dense_csls(q, g, csls_k, metric), atol=1e-4)


def test_csls_can_be_iterated_twice():
    rng = np.random.default_rng(2)
    scorer = Scorer(rng.normal(size=(9, 4)), rng.normal(size=(6, 4)), csls_k=2, chunk_size=4)
    np.testing.assert_array_equal(collect(scorer), collect(scorer))


def test_csls_demotes_a_hub():
    # Four queries cluster around the hub direction; a fifth query q* lies far from them.
    # Under cosine the hub (and the cluster's items) beat q*'s true match; CSLS penalises
    # gallery items that are close to many queries, so q*'s match comes first.
    cluster = np.array([[1, s1 * 0.1, s2 * 0.1] for s1 in (-1, 1) for s2 in (-1, 1)])
    q_star = np.array([[0.6, 0.8, 0.0]])
    queries = np.vstack([cluster, q_star])
    hub = np.array([[1.0, 0.0, 0.0]])  # the normalised mean of the cluster queries
    match = np.array([[0.0, 0.6, 0.8]])  # true match of q*: cosine 0.48 < 0.6 to the hub
    gallery = np.vstack([hub, cluster, match])  # column j+1 is the match of query j

    _, cos_idx = topk(Scorer(queries, gallery), k=gallery.shape[0])
    _, csls_idx = topk(Scorer(queries, gallery, csls_k=3), k=gallery.shape[0])
    cos_rank = int(np.argmax(cos_idx[4] == 5)) + 1
    csls_rank = int(np.argmax(csls_idx[4] == 5)) + 1
    np.testing.assert_array_equal(cos_idx[:4, 1], 0)  # hub: runner-up for every cluster query
    assert list(cos_idx[4]).index(0) < list(cos_idx[4]).index(5)  # and beats q*'s match
    assert cos_rank == 6  # q*'s match is beaten by the hub and all four cluster items
    assert csls_rank == 1
    # Every cluster query still retrieves its own item first.
    np.testing.assert_array_equal(csls_idx[:4, 0], [1, 2, 3, 4])


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_scorer_rejects_bad_csls_k(bad):
    with pytest.raises(ValueError, match="csls_k"):
        Scorer(np.ones((2, 3)), np.ones((2, 3)), csls_k=bad)


@pytest.mark.parametrize("bad", [0, -4, 2.0])
def test_scorer_rejects_bad_chunk_size(bad):
    with pytest.raises(ValueError, match="chunk_size"):
        Scorer(np.ones((2, 3)), np.ones((2, 3)), chunk_size=bad)


def test_scorer_validates_inputs():
    with pytest.raises(ValueError, match=r"gallery contain NaN or inf in 1 row \(first: row 0\)"):
        Scorer(np.ones((2, 3)), np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="queries must be a 2-D array"):
        Scorer(np.ones(3), np.ones((1, 3)))
    with pytest.raises(ValueError, match="queries have dimension 3 but the gallery has 4"):
        Scorer(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown metric 'euclid'"):
        Scorer(np.ones((2, 3)), np.ones((2, 3)), metric="euclid")


def test_csls_with_a_reference_set_takes_r_reference_from_it():
    """The search index's CSLS: r_reference of a gallery item comes from its nearest reference
    rows (the gallery's captions), not from the queries scored alongside."""
    rng = np.random.default_rng(7)
    queries, gallery, reference = rng.normal(size=(3, 5)), rng.normal(size=(11, 5)), rng.normal(size=(17, 5))
    k = 4
    s = pairwise(queries, gallery).astype(np.float64)
    r_gallery = np.sort(s, axis=1)[:, -k:].mean(axis=1)
    r_reference = np.sort(pairwise(reference, gallery), axis=0)[-k:].mean(axis=0)
    expected = 2 * s - r_gallery[:, None] - r_reference[None, :]
    got = collect(Scorer(queries, gallery, csls_k=k, reference=reference, chunk_size=2))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(reference_means(reference, gallery, k, chunk_size=5), r_reference, atol=1e-6)
    with pytest.raises(ValueError, match="reference have dimension 4 but the gallery has 5"):
        Scorer(queries, gallery, csls_k=k, reference=reference[:, :4])
