"""Fused multi-modality queries: mean of unit embeddings, sum of scores."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.evaluate import evaluate_retrieval, ranks
from xmodal.retrieval import Scorer, SumScorer, fuse_mean, fused_scorer, pairwise, search


def views(n: int = 60, noise: float = 1.2, seed: int = 0):
    """A gallery and two independently noisy query views of each gallery item."""
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(n, 12)).astype(np.float32)
    return gallery, [(gallery + noise * rng.normal(size=gallery.shape)).astype(np.float32) for _ in range(2)]


def test_fuse_mean_is_the_mean_of_unit_rows():
    a = np.array([[3.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 1.0], [0.0, 5.0]])
    np.testing.assert_allclose(fuse_mean([a, b]), [[0.5, 0.5], [0.0, 1.0]])


def test_sum_scorer_sums_per_modality_scores_in_chunks():
    gallery, (a, b) = views()
    scorer = SumScorer([Scorer(a, gallery, chunk_size=7), Scorer(b, gallery, chunk_size=13)])
    dense = np.concatenate([s for _, s in scorer.chunks()])
    np.testing.assert_allclose(dense, pairwise(a, gallery) + pairwise(b, gallery), atol=1e-5)


def test_two_noisy_views_fused_beat_each_alone():
    gallery, (a, b) = views()
    labels = np.arange(len(gallery))
    alone = [evaluate_retrieval(x, gallery, labels, labels)["R@1"] for x in (a, b)]
    for fusion in ("mean", "score"):
        fused = evaluate_retrieval([a, b], gallery, labels, labels, fusion=fusion)["R@1"]
        assert fused > max(alone), (fusion, fused, alone)


def test_mean_and_score_fusion_rank_alike_under_cosine_but_not_under_csls():
    """sum_m cos(q_m, g) = 2 mean(q) . g for unit rows: same ranking; CSLS's penalties differ."""
    gallery, (a, b) = views(noise=2.0)
    labels = np.arange(len(gallery))
    np.testing.assert_array_equal(
        ranks(fused_scorer([a, b], gallery, fusion="mean"), labels, labels),
        ranks(fused_scorer([a, b], gallery, fusion="score"), labels, labels),
    )
    mean = np.concatenate([s for _, s in fused_scorer([a, b], gallery, fusion="mean", csls_k=5).chunks()])
    score = np.concatenate([s for _, s in fused_scorer([a, b], gallery, fusion="score", csls_k=5).chunks()])
    assert not np.array_equal(np.argsort(-mean, axis=1), np.argsort(-score, axis=1))


def test_search_accepts_fused_queries():
    gallery, (a, b) = views(noise=0.1)
    scores, indices = search([a, b], gallery, k=3, fusion="score")
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(gallery)))
    assert (np.diff(scores, axis=1) <= 0).all()


def test_fusion_errors_name_the_problem():
    gallery, (a, b) = views()
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        fused_scorer([a, b], gallery, fusion="max")
    with pytest.raises(ValueError, match="row-paired"):
        fused_scorer([a, b[:10]], gallery)
    with pytest.raises(ValueError, match="query modality 1 contain NaN"):
        fused_scorer([a, np.full_like(b, np.nan)], gallery)
    with pytest.raises(ValueError, match="at least one modality"):
        fused_scorer([], gallery)
