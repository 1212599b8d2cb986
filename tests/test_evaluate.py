import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xmodal.evaluate import evaluate_bidirectional, evaluate_retrieval, ranks, recall_metrics, streamed_ranks
from xmodal.retrieval import BankNormaliser, Scorer, pairwise

# 3 queries x 4 gallery items; query i is relevant to the gallery item with the same label.
SCORES_3x4 = np.array(
    [
        [0.9, 0.1, 0.5, 0.3],  # relevant col 0 is the best           -> rank 1
        [0.2, 0.4, 0.8, 0.6],  # relevant col 3 (0.6) beaten by col 2  -> rank 2
        [0.7, 0.7, 0.1, 0.7],  # relevant col 1 tied with cols 0 and 3 -> rank 3 (pessimistic)
    ]
)
QUERY_LABELS_3 = np.array([0, 3, 1])
GALLERY_LABELS_4 = np.array([0, 1, 2, 3])


def exact_scorer(scores: np.ndarray, chunk_size: int | None = None) -> Scorer:
    """Scorer whose dot scores are exactly ``scores``: identity queries against ``scores.T``."""
    return Scorer(np.eye(scores.shape[0]), scores.T, metric="dot", chunk_size=chunk_size)


# --- ranks ------------------------------------------------------------------------------


def test_ranks_hand_computed_3x4():
    got = ranks(SCORES_3x4, QUERY_LABELS_3, GALLERY_LABELS_4)
    np.testing.assert_array_equal(got, [1, 2, 3])
    assert got.dtype == np.int64


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_ranks_accepts_a_scorer(chunk_size):
    got = ranks(exact_scorer(SCORES_3x4, chunk_size), QUERY_LABELS_3, GALLERY_LABELS_4)
    np.testing.assert_array_equal(got, [1, 2, 3])


def test_constant_scores_are_ranked_pessimistically():
    # 2 images x 10 captions (5 per image): rank = n_gallery - n_relevant + 1 = 6.
    caption_labels = np.repeat([0, 1], 5)
    np.testing.assert_array_equal(ranks(np.zeros((2, 10)), [0, 1], caption_labels), [6, 6])
    # One relevant item among 4 -> worst rank 4.
    np.testing.assert_array_equal(ranks(np.ones((3, 4)), QUERY_LABELS_3, GALLERY_LABELS_4), [4, 4, 4])


def test_several_positives_count_the_best_one():
    caption_labels = np.repeat([0, 1], 5)  # captions 0-4 describe image 0, captions 5-9 image 1
    scores = np.array(
        [
            # best relevant 0.8 (caption 1), beaten by captions 5 (0.9) and 7 (0.85) -> rank 3
            [0.1, 0.8, 0.3, 0.2, 0.0, 0.9, 0.5, 0.85, 0.1, 0.2],
            # best relevant 0.6 (caption 6), beaten by caption 0 (0.7)               -> rank 2
            [0.7, 0.2, 0.2, 0.2, 0.2, 0.1, 0.6, 0.3, 0.2, 0.05],
        ]
    )
    np.testing.assert_array_equal(ranks(scores, [0, 1], caption_labels), [3, 2])
    # Text->image direction: each caption has exactly one relevant image (caption 3 ties).
    np.testing.assert_array_equal(ranks(scores.T, caption_labels, [0, 1]), [2, 1, 1, 2, 2, 2, 1, 2, 1, 2])


@pytest.mark.parametrize("csls_k", [0, 3])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunked_ranks_equal_dense(chunk_size, csls_k):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(53, 16)), rng.normal(size=(41, 16))
    g_labels = rng.integers(0, 20, size=41)
    q_labels = rng.choice(g_labels, size=53)
    dense = pairwise(q, g)
    if csls_k:
        r_g = np.sort(dense, axis=1)[:, -csls_k:].mean(axis=1)
        r_q = np.sort(dense, axis=0)[-csls_k:].mean(axis=0)
        dense = 2 * dense - r_g[:, None] - r_q[None, :]
    scorer = Scorer(q, g, csls_k=csls_k, chunk_size=chunk_size)
    np.testing.assert_array_equal(ranks(scorer, q_labels, g_labels), ranks(dense, q_labels, g_labels))


def test_ranks_rejects_label_length_mismatch():
    with pytest.raises(ValueError, match="query_labels has 2 entries but there are 3 queries"):
        ranks(SCORES_3x4, [0, 1], GALLERY_LABELS_4)
    with pytest.raises(ValueError, match="gallery_labels has 3 entries but there are 4 gallery items"):
        ranks(SCORES_3x4, QUERY_LABELS_3, [0, 1, 2])


def test_ranks_rejects_non_integer_labels():
    with pytest.raises(ValueError, match="query_labels must be a 1-D integer array"):
        ranks(SCORES_3x4, [0.0, 3.0, 1.0], GALLERY_LABELS_4)


def test_ranks_rejects_query_without_positive():
    with pytest.raises(ValueError, match=r"2 queries have no relevant gallery item \(first: query 1\)"):
        ranks(SCORES_3x4, [0, 7, 9], GALLERY_LABELS_4)


def test_ranks_rejects_nan_scores():
    scores = SCORES_3x4.copy()
    scores[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"scores contain NaN \(first: query 1\)"):
        ranks(scores, QUERY_LABELS_3, GALLERY_LABELS_4)


def test_ranks_rejects_non_matrix_scores():
    with pytest.raises(ValueError, match=r"scores must be a 2-D array, got shape \(4,\)"):
        ranks(np.zeros(4), [0], GALLERY_LABELS_4)


@st.composite
def retrieval_cases(draw, unique: bool = False):
    n_q = draw(st.integers(1, 6))
    n_g = draw(st.integers(1, 10))
    g_labels = draw(arrays(np.int64, n_g, elements=st.integers(0, 3)))
    present = sorted(set(g_labels.tolist()))
    q_labels = np.array(draw(st.lists(st.sampled_from(present), min_size=n_q, max_size=n_q)))
    elements = st.floats(-1, 1, allow_nan=False, width=32)
    scores = draw(arrays(np.float32, (n_q, n_g), elements=elements, unique=unique))
    perm = np.array(draw(st.permutations(range(n_g))))
    return scores, q_labels, g_labels, perm


@settings(max_examples=200, deadline=None)
@given(retrieval_cases())
def test_ranks_bounded_and_invariant_to_gallery_order(case):
    # Pessimistic tie counting makes ranks order-independent even with tied scores.
    scores, q_labels, g_labels, perm = case
    r = ranks(scores, q_labels, g_labels)
    n_relevant = (q_labels[:, None] == g_labels[None, :]).sum(axis=1)
    assert ((r >= 1) & (r <= scores.shape[1] - n_relevant + 1)).all()
    np.testing.assert_array_equal(ranks(scores[:, perm], q_labels, g_labels[perm]), r)


@settings(max_examples=200, deadline=None)
@given(retrieval_cases(unique=True))
def test_ranks_without_ties_match_sorted_position(case):
    scores, q_labels, g_labels, _ = case
    order = np.argsort(-scores, axis=1)
    relevant_sorted = q_labels[:, None] == g_labels[order]
    expected = 1 + np.argmax(relevant_sorted, axis=1)
    np.testing.assert_array_equal(ranks(scores, q_labels, g_labels), expected)


# --- recall_metrics ---------------------------------------------------------------------


def test_recall_metrics_hand_computed():
    m = recall_metrics(np.array([1, 2, 4, 10]))
    assert list(m) == ["R@1", "R@5", "R@10", "medR", "meanR"]
    expected = {"R@1": 25.0, "R@5": 75.0, "R@10": 100.0, "medR": 3.0, "meanR": 4.25}
    assert m == pytest.approx(expected)


def test_recall_metrics_on_3x4_ranks():
    m = recall_metrics(ranks(SCORES_3x4, QUERY_LABELS_3, GALLERY_LABELS_4), ks=(1, 2, 3))
    assert m == pytest.approx({"R@1": 100 / 3, "R@2": 200 / 3, "R@3": 100.0, "medR": 2.0, "meanR": 2.0})


@pytest.mark.parametrize("bad_ranks", [np.array([], dtype=np.int64), np.array([[1]]), [0, 2]])
def test_recall_metrics_rejects_bad_ranks(bad_ranks):
    with pytest.raises(ValueError, match="ranks"):
        recall_metrics(bad_ranks)


@pytest.mark.parametrize("bad_k", [0, 1.5, True])
def test_recall_metrics_rejects_bad_ks(bad_k):
    with pytest.raises(ValueError, match="ks must be positive integers"):
        recall_metrics([1, 2], ks=(1, bad_k))


# --- evaluate_retrieval / evaluate_bidirectional ----------------------------------------


def test_evaluate_retrieval_csls_fixes_a_hub():
    # Same geometry as test_similarity.test_csls_demotes_a_hub: query 4's match is beaten
    # under cosine (rank 6) but ranked first under CSLS.
    cluster = np.array([[1, s1 * 0.1, s2 * 0.1] for s1 in (-1, 1) for s2 in (-1, 1)])
    queries = np.vstack([cluster, [[0.6, 0.8, 0.0]]])
    gallery = np.vstack([[[1.0, 0.0, 0.0]], cluster, [[0.0, 0.6, 0.8]]])
    q_labels, g_labels = np.arange(1, 6), np.arange(6)  # gallery item 0 is the hub
    cos = evaluate_retrieval(queries, gallery, q_labels, g_labels, ks=(1, 5), prefix="x/")
    csls = evaluate_retrieval(queries, gallery, q_labels, g_labels, csls_k=3, ks=(1, 5))
    assert cos == pytest.approx({"x/R@1": 80.0, "x/R@5": 80.0, "x/medR": 1.0, "x/meanR": 2.0})
    assert csls == pytest.approx({"R@1": 100.0, "R@5": 100.0, "medR": 1.0, "meanR": 1.0})


def test_evaluate_retrieval_propagates_input_errors():
    with pytest.raises(ValueError, match="queries have dimension 4 but the gallery has 5"):
        evaluate_retrieval(np.ones((2, 4)), np.ones((2, 5)), [0, 1], [0, 1])


def test_evaluate_bidirectional_five_captions_per_image():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(40, 32))
    image_labels = np.arange(40)
    text_labels = np.repeat(image_labels, 5)
    text = image[text_labels] + 0.3 * rng.normal(size=(200, 32))
    m = evaluate_bidirectional(text, image, text_labels, image_labels)
    assert set(m) == {f"{d}/{name}" for d in ("t2i", "i2t") for name in ("R@1", "R@5", "R@10", "medR", "meanR")}
    assert m["t2i/R@1"] == m["i2t/R@1"] == 100.0
    assert m["t2i/meanR"] == m["i2t/meanR"] == 1.0

    noisy = evaluate_bidirectional(
        image[text_labels] + 3.0 * rng.normal(size=(200, 32)), image, text_labels, image_labels
    )
    for d in ("t2i", "i2t"):
        assert 0 <= noisy[f"{d}/R@1"] <= noisy[f"{d}/R@5"] <= noisy[f"{d}/R@10"] <= 100
        assert noisy[f"{d}/meanR"] >= 1
    # An image query has 5 chances, a caption query one: i2t is easier.
    assert noisy["i2t/R@1"] > noisy["t2i/R@1"]


def test_evaluate_bidirectional_directions_match_evaluate_retrieval():
    rng = np.random.default_rng(1)
    image, text = rng.normal(size=(12, 8)), rng.normal(size=(24, 8))
    image_labels, text_labels = np.arange(12), np.repeat(np.arange(12), 2)
    m = evaluate_bidirectional(text, image, text_labels, image_labels, metric="dot", csls_k=2)
    t2i = evaluate_retrieval(text, image, text_labels, image_labels, metric="dot", csls_k=2)
    i2t = evaluate_retrieval(image, text, image_labels, text_labels, metric="dot", csls_k=2)
    assert m == {f"t2i/{k}": v for k, v in t2i.items()} | {f"i2t/{k}": v for k, v in i2t.items()}


def test_evaluate_retrieval_rerank_with_a_training_bank_fixes_a_hub():
    # Every query and every training (bank) query heads for the hub, gallery row 6.
    rng = np.random.default_rng(2)
    eye, hub = np.eye(7), np.eye(7)[:6].sum(0) / np.sqrt(6)
    gallery = np.vstack([eye[:6], hub])
    queries = eye[:6] + 1.2 * hub + 0.02 * rng.normal(size=(6, 7))
    bank = eye[rng.integers(0, 6, size=60)] + 1.2 * hub + 0.02 * rng.normal(size=(60, 7))
    labels = np.arange(6)
    g_labels = np.arange(7)
    rerank = BankNormaliser("inverted-softmax", beta=10.0).fit(Scorer(bank, gallery))
    plain = evaluate_retrieval(queries, gallery, labels, g_labels, ks=(1,))
    fixed = evaluate_retrieval(queries, gallery, labels, g_labels, ks=(1,), rerank=rerank)
    assert plain["R@1"] == 0.0 and fixed["R@1"] == 100.0
    with pytest.raises(ValueError, match="rerank needs the queries as one array"):
        evaluate_retrieval([queries, queries], gallery, labels, g_labels, rerank=rerank)


def test_evaluate_bidirectional_reranks_the_directions_it_is_given():
    rng = np.random.default_rng(3)
    image, text = rng.normal(size=(12, 8)), rng.normal(size=(24, 8))
    image_labels, text_labels = np.arange(12), np.repeat(np.arange(12), 2)
    rerank = BankNormaliser("dual-softmax", beta=5.0).fit(Scorer(rng.normal(size=(30, 8)), image))
    m = evaluate_bidirectional(text, image, text_labels, image_labels, csls_k=2, rerank={"t2i": rerank})
    t2i = evaluate_retrieval(text, image, text_labels, image_labels, csls_k=2, rerank=rerank)
    assert m == evaluate_bidirectional(text, image, text_labels, image_labels, csls_k=2) | {
        f"t2i/{k}": v for k, v in t2i.items()
    }
    with pytest.raises(ValueError, match=r"rerank directions are 't2i' and 'i2t', got \['text'\]"):
        evaluate_bidirectional(text, image, text_labels, image_labels, rerank={"text": rerank})


def test_chance_recall_matches_a_random_ranking():
    from xmodal.evaluate import chance_recall

    gallery = np.repeat(np.arange(50), [5] + [1] * 49)  # item 0 has 5 rows, the others one
    queries = np.arange(50)
    exact = 100 * np.mean([1 - np.prod([(54 - 5 - i) / (54 - i) for i in range(10)])] + [10 / 54] * 49)
    assert chance_recall(queries, gallery, 10) == pytest.approx(exact)
    rng = np.random.default_rng(0)
    simulated = np.mean(
        [recall_metrics(ranks(rng.random((50, 54)), queries, gallery), [10])["R@10"] for _ in range(400)]
    )
    assert abs(simulated - exact) < 1.0
    assert chance_recall(queries, gallery, 60) == 100.0  # k beyond the gallery finds everything
    with pytest.raises(ValueError, match="k must be >= 1"):
        chance_recall(queries, gallery, 0)


def blocks_of(x: np.ndarray, size: int):
    return lambda: (x[i : i + size] for i in range(0, len(x), size))


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("csls_k", [0, 1, 10])
def test_streamed_ranks_equal_the_in_memory_ranks(metric, csls_k):
    rng = np.random.default_rng(3)
    images = rng.standard_normal((120, 16)).astype(np.float32)
    captions = np.repeat(images, 5, axis=0) * 0.4 + rng.standard_normal((600, 16)).astype(np.float32)
    c_items, i_items = np.arange(600) // 5, np.arange(120)
    for q, g, ql, gl in ((captions, images, c_items, i_items), (images, captions, i_items, c_items)):
        expected = ranks(Scorer(q, g, metric=metric, csls_k=csls_k), ql, gl)
        streamed = streamed_ranks(blocks_of(q, 77), blocks_of(g, 50), ql, gl, metric=metric, csls_k=csls_k)
        np.testing.assert_array_equal(streamed, expected)
        assert expected.min() == 1 and expected.max() > 10  # a real ranking, neither perfect nor constant


def test_streamed_ranks_refuse_what_does_not_add_up():
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    labels = np.arange(10)
    with pytest.raises(ValueError, match="the gallery yields 10 rows for 11 labels"):
        streamed_ranks(blocks_of(x, 4), blocks_of(x, 4), labels, np.arange(11))
    with pytest.raises(ValueError, match="2 queries have no relevant gallery item"):
        streamed_ranks(blocks_of(x, 4), blocks_of(x, 4), labels + 2, labels)
    bad = x.copy()
    bad[6, 1] = np.nan
    with pytest.raises(ValueError, match="scores contain NaN"):
        streamed_ranks(blocks_of(bad, 4), blocks_of(x, 4), labels, labels, metric="dot")
