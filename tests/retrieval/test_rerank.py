"""Re-ranking: query-bank normalisation, k-reciprocal consensus and the training-set bridge,
on known answers (a planted hub, an exact training duplicate, hand-made neighbourhoods)."""

import numpy as np
import pytest

from xmodal.align import linalg
from xmodal.core.estimator import NotFittedError
from xmodal.retrieval import (
    BankNormaliser,
    Bridge,
    KReciprocal,
    QueryBridge,
    Reranked,
    Scorer,
    SinkhornNormaliser,
    group_means,
    pairwise,
)
from xmodal.retrieval.rerank import (
    bridge,
    bridge_votes,
    dual_softmax,
    dynamic_inverted_softmax,
    expand_queries,
    inverted_softmax,
    k_reciprocal,
    reciprocal_neighbours,
)


def collect(scores: Reranked) -> np.ndarray:
    return np.concatenate([s for _, s in scores.chunks()])


def hub_world(seed: int = 0, n_items: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery items ``e_0..e_5`` plus a hub ``u`` (their mean direction, row 6) and a lonely
    item ``e_7`` (row 7); query ``i`` is ``e_i + 1.2 u`` (a little noise), so plain cosine
    ranks the hub first for every query; the bank is 60 more such queries, the query row 6 is
    ``e_7``, which no bank query heads for."""
    rng = np.random.default_rng(seed)
    eye = np.eye(8)
    hub = eye[:n_items].sum(0) / np.sqrt(n_items)
    gallery = np.vstack([eye[:n_items], hub, eye[7]])

    def near(items: np.ndarray) -> np.ndarray:
        return eye[items] + 1.2 * hub + 0.02 * rng.normal(size=(len(items), 8))

    queries = np.vstack([near(np.arange(n_items)), eye[7]])
    bank = near(rng.integers(0, n_items, size=60))
    return queries, gallery, bank


# --- query-bank normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_bank_log_normaliser_is_a_column_logsumexp_and_columns_sum_to_one(chunk_size):
    rng = np.random.default_rng(0)
    bank, gallery = rng.normal(size=(50, 6)), rng.normal(size=(9, 6))
    beta = 7.0
    s_bank = pairwise(bank, gallery).astype(np.float64)
    fitted = BankNormaliser("inverted-softmax", beta=beta).fit(Scorer(bank, gallery, chunk_size=chunk_size))
    np.testing.assert_allclose(fitted.log_normaliser_, np.log(np.exp(beta * s_bank).sum(0)), rtol=1e-6)
    # Over the bank, each gallery column of the inverted softmax is a distribution.
    probabilities = np.exp(inverted_softmax(s_bank, fitted.log_normaliser_, beta).astype(np.float64))
    np.testing.assert_allclose(probabilities.sum(0), 1.0, rtol=1e-5)


def test_large_beta_does_not_overflow():
    bank = np.array([[1.0, 0.5], [0.2, 0.6]])  # exp(500) overflows float64; its log does not
    log_norm = 500.0 * bank.max(0) + np.log(np.exp(500.0 * (bank - bank.max(0))).sum(0))
    out = inverted_softmax(np.array([[0.9, 0.8]]), log_norm, 500.0)
    np.testing.assert_allclose(out, [[450.0 - 500.0, 400.0 - 300.0]], rtol=1e-6)


def test_dual_softmax_orders_a_row_like_twice_beta_minus_the_normaliser():
    rng = np.random.default_rng(1)
    scores, log_norm, beta = rng.uniform(-1, 1, size=(5, 8)), rng.normal(size=8), 3.0
    gap = dual_softmax(scores, log_norm, beta) - (2 * beta * scores - log_norm)
    np.testing.assert_allclose(gap, gap[:, :1].repeat(8, axis=1), atol=1e-5)  # a constant per row


def test_bank_normalisers_demote_a_planted_hub():
    queries, gallery, bank = hub_world()
    plain = pairwise(queries, gallery)
    assert (plain[:6].argmax(1) == 6).all()  # the hub beats every query's own item
    for kind in ("inverted-softmax", "dual-softmax", "qb-norm"):
        rerank = BankNormaliser(kind, beta=10.0).fit(Scorer(bank, gallery))
        reranked = collect(Reranked(Scorer(queries, gallery), queries, rerank))
        np.testing.assert_array_equal(reranked[:6].argmax(1), np.arange(6), err_msg=kind)


def test_qb_norm_leaves_rows_whose_best_item_no_bank_query_prefers():
    queries, gallery, bank = hub_world()
    fitted = BankNormaliser("qb-norm", beta=10.0).fit(Scorer(bank, gallery))
    assert fitted.activated_[6] and not fitted.activated_[7]  # the hub is some bank query's top-1; e_7 is no one's
    plain = pairwise(queries, gallery)
    out = fitted(queries, plain)
    np.testing.assert_array_equal(out[6], plain[6])  # query 6 heads for e_7: untouched
    np.testing.assert_allclose(out[:6], inverted_softmax(plain[:6], fitted.log_normaliser_, 10.0), rtol=1e-6)


def test_dynamic_inverted_softmax_by_hand():
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    log_norm = np.array([2.0, 0.0])
    out = dynamic_inverted_softmax(scores, log_norm, np.array([True, False]), beta=1.0)
    np.testing.assert_allclose(out, [[0.9 - 2.0, 0.1], [0.2, 0.8]], rtol=1e-6)


def test_bank_normaliser_checks():
    with pytest.raises(ValueError, match="unknown bank normaliser 'softmax'"):
        BankNormaliser("softmax").fit(Scorer(np.ones((2, 3)), np.ones((2, 3))))
    with pytest.raises(ValueError, match="beta must be > 0"):
        BankNormaliser(beta=0.0).fit(Scorer(np.ones((2, 3)), np.ones((2, 3))))
    with pytest.raises(NotFittedError):
        BankNormaliser()(np.ones((1, 3)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"scores have shape \(3, 4\) but the bank statistics have shape \(5,\)"):
        inverted_softmax(np.zeros((3, 4)), np.zeros(5), 1.0)
    with pytest.raises(ValueError, match=r"activated must be a bool array of shape \(4,\)"):
        dynamic_inverted_softmax(np.zeros((3, 4)), np.zeros(4), np.zeros(4), 1.0)


def test_sinkhorn_potentials_order_each_row_like_the_plan():
    rng = np.random.default_rng(2)
    scores = rng.uniform(-1, 1, size=(30, 12))
    plan = linalg.sinkhorn(scores, 0.1, iterations=200)
    g = linalg.sinkhorn_column_potentials(scores, 0.1, iterations=200)
    gap = np.log(plan.astype(np.float64)) - (scores / 0.1 + g)
    np.testing.assert_allclose(gap, gap[:, :1].repeat(12, axis=1), atol=1e-3)  # a constant per row


def test_sinkhorn_with_the_queries_as_bank_matches_them_one_to_one(tmp_path):
    """Every query's nearest gallery item is the hub: balancing the queries against the
    gallery gives each query its own item back; the rerank saves and loads."""
    queries, gallery, _ = hub_world()
    plain = pairwise(queries[:6], gallery[:7])
    assert (plain.argmax(1) == 6).all()
    rerank = SinkhornNormaliser(epsilon=0.05).fit(Scorer(queries[:6], gallery[:7], chunk_size=4))
    assert rerank.potential_[6] < rerank.potential_[:6].min()  # the hub is pushed down
    reranked = collect(Reranked(Scorer(queries[:6], gallery[:7]), queries[:6], rerank))
    np.testing.assert_array_equal(reranked.argmax(1), np.arange(6))
    loaded = SinkhornNormaliser.load(rerank.save(tmp_path / "sinkhorn.npz"))
    np.testing.assert_array_equal(loaded(queries[:6], plain), rerank(queries[:6], plain))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        SinkhornNormaliser(epsilon=0).fit(Scorer(queries, gallery))
    with pytest.raises(ValueError, match=r"scores have shape \(1, 3\) but the bank statistics have shape \(7,\)"):
        rerank(queries[:1], np.zeros((1, 3)))


# --- k-reciprocal -------------------------------------------------------------------------


def test_reciprocal_neighbours_by_hand():
    # 0 and 1 name each other; 2 names 0, which does not name 2 back.
    neighbours = np.array([[0, 1], [1, 0], [2, 0]])
    r = reciprocal_neighbours(neighbours).toarray()
    np.testing.assert_array_equal(r, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_k_reciprocal_jaccard_by_hand():
    reciprocal = reciprocal_neighbours(np.array([[0, 1], [1, 0], [2, 0]]))
    scores = np.array([[0.5, 0.4, 0.45]])  # the query's 2 best: {0, 2}
    # J({0, 2}, R(0) = {0, 1}) = 1/3, J({0, 2}, R(1) = {0, 1}) = 1/3, J({0, 2}, R(2) = {2}) = 1/2
    out = k_reciprocal(scores, reciprocal, k=2, weight=0.5)
    np.testing.assert_allclose(out, [[0.25 + 1 / 6, 0.2 + 1 / 6, 0.225 + 0.25]], rtol=1e-6)
    np.testing.assert_array_equal(k_reciprocal(scores, reciprocal, k=2, weight=0.0), scores.astype(np.float32))
    with pytest.raises(ValueError, match=r"reciprocal has shape \(3, 3\) but the scores have 4 gallery columns"):
        k_reciprocal(np.zeros((1, 4)), reciprocal, k=2, weight=0.5)


def test_k_reciprocal_rerank_saves_and_loads(tmp_path):
    rng = np.random.default_rng(2)
    gallery, queries = rng.normal(size=(20, 5)), rng.normal(size=(4, 5))
    fitted = KReciprocal(k=3, weight=0.3).fit(gallery)
    assert fitted.neighbours_.shape == (20, 3)
    assert all(i in row for i, row in enumerate(fitted.neighbours_))  # each item is its own nearest
    loaded = KReciprocal.load(fitted.save(tmp_path / "kr"))
    scores = pairwise(queries, gallery)
    np.testing.assert_array_equal(loaded(queries, scores), fitted(queries, scores))
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
        KReciprocal(weight=1.5).fit(gallery)


# --- the bridge -----------------------------------------------------------------------------


def bridge_world(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """Training captions and their images (random, 16-d), a test gallery holding copies of
    training images 4, 9 and 15 among noise, and random plain scores."""
    rng = np.random.default_rng(seed)
    captions, images = rng.normal(size=(30, 16)), rng.normal(size=(30, 16))
    gallery = np.vstack([rng.normal(size=(5, 16)), images[[4, 9, 15]]])  # rows 5, 6, 7
    return captions, images, gallery, rng


def test_bridge_with_weight_zero_gives_the_scores_back():
    captions, images, gallery, rng = bridge_world()
    queries = rng.normal(size=(6, 16))
    scores = rng.normal(size=(6, 8)).astype(np.float32)
    rerank = Bridge(beta=10.0, weight=0.0).fit(captions, images, gallery)
    np.testing.assert_array_equal(rerank(queries, scores), scores)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_bridge_recovers_the_pair_of_an_exact_training_duplicate():
    captions, images, gallery, rng = bridge_world()
    queries = captions[[4, 9, 15]]  # each is exactly a training caption
    voted = bridge_votes(queries, captions, images, beta=100.0, neighbours=5)
    np.testing.assert_allclose(voted, unit(images[[4, 9, 15]]), atol=1e-6)  # the duplicate takes all the weight
    scores = rng.normal(size=(3, 8))  # plain scores that know nothing
    np.testing.assert_array_equal(bridge(scores, voted, gallery, weight=1.0).argmax(1), [5, 6, 7])


def test_bridge_votes_by_hand():
    # Two training queries at cosines 1 and 0 from the query, beta = ln 3: weights 3/4 and 1/4.
    bank, votes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 5.0], [9.0, 9.0]])
    voted = bridge_votes(np.array([[3.0, 0.0]]), bank, votes, beta=np.log(3.0), neighbours=2)
    np.testing.assert_allclose(voted, [[0.75, 0.25]], rtol=1e-6)


@pytest.mark.parametrize("chunked", [False, True])
def test_the_rewritten_query_orders_the_gallery_like_the_bridge(chunked, monkeypatch):
    captions, _, _, rng = bridge_world()
    if chunked:  # blocks of 7 queries in bridge_votes
        monkeypatch.setattr("xmodal.retrieval.rerank.default_chunk_size", lambda n: 7)
    queries, shared_gallery = rng.normal(size=(40, 16)), unit(rng.normal(size=(8, 16)))
    voted = bridge_votes(queries, captions, captions, beta=5.0, neighbours=7)  # the expansion: queries vote
    rewritten = expand_queries(queries, voted, weight=0.4)
    expected = bridge(pairwise(queries, shared_gallery), voted, shared_gallery, weight=0.4)
    np.testing.assert_allclose(rewritten @ shared_gallery.T, expected, rtol=1e-5, atol=1e-6)
    rerank = Bridge(beta=5.0, weight=0.4, neighbours=7).fit(captions, captions, shared_gallery)
    np.testing.assert_allclose(rerank(queries, pairwise(queries, shared_gallery)), expected, rtol=1e-5, atol=1e-6)


def test_bridge_checks_shapes():
    captions, images, gallery, _ = bridge_world()
    with pytest.raises(ValueError, match=r"got voted \(2, 15\), gallery \(8, 16\)"):
        bridge(np.zeros((2, 8)), np.zeros((2, 15)), gallery, weight=0.5)
    with pytest.raises(ValueError, match=r"queries \(1, 8\) and bank \(30, 16\) must share a dimension"):
        bridge_votes(np.ones((1, 8)), captions, images, beta=1.0, neighbours=3)
    with pytest.raises(ValueError, match=r"bank \(30, 16\) and votes \(29, 16\) must be row-paired"):
        Bridge().fit(captions, images[:29], gallery)
    with pytest.raises(ValueError, match=r"voted has shape \(1, 4\) but the queries \(1, 8\)"):
        expand_queries(np.ones((1, 8)), np.ones((1, 4)), 0.5)


def test_query_bridge_sends_a_training_duplicate_to_its_pair(tmp_path):
    captions, images, _, rng = bridge_world()
    queries = np.vstack([captions[[4, 9]], rng.normal(size=(1, 16))])
    rewrite = QueryBridge(beta=100.0, weight=1.0, neighbours=5).fit(captions, images)
    np.testing.assert_allclose(rewrite.transform(queries)[:2], unit(images[[4, 9]]), atol=1e-6)
    unchanged = QueryBridge(weight=0.0).fit(captions, images).transform(queries)
    np.testing.assert_allclose(unchanged, unit(queries), rtol=1e-6)
    loaded = QueryBridge.load(rewrite.save(tmp_path / "bridge"))
    np.testing.assert_array_equal(loaded.transform(queries), rewrite.transform(queries))


def test_query_bridge_checks_its_input():
    captions, images, _, _ = bridge_world()
    with pytest.raises(ValueError, match=r"bank \(30, 16\) and votes \(30, 8\) must be row-paired, in one space"):
        QueryBridge().fit(captions, images[:, :8])
    with pytest.raises(ValueError, match="weight must be in"):
        QueryBridge(weight=1.5).fit(captions, images)
    with pytest.raises(NotFittedError):
        QueryBridge().transform(captions)


def test_group_means_by_hand():
    rows = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, -4.0]])
    first, means = group_means(rows, np.array([5, 2, 5, 2]))
    np.testing.assert_array_equal(first, [1, 0])  # group 2 first appears at row 1, group 5 at row 0
    np.testing.assert_allclose(means, [[0.0, 0.0], [1.0, 0.0]])  # unit rows averaged: (0,1) and (0,-1) cancel
    with pytest.raises(ValueError, match=r"groups must have one entry per row \(4\)"):
        group_means(rows, np.array([1, 2]))


def test_reranked_checks_the_query_rows():
    with pytest.raises(ValueError, match=r"3 query rows for a score matrix of shape \(2, 4\)"):
        Reranked(Scorer(np.ones((2, 3)), np.ones((4, 3))), np.ones((3, 3)), KReciprocal())
