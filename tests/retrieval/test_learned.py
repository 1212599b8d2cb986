"""Learned similarities on planted data: they learn the planted relation, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.core.estimator import NotFittedError
from xmodal.evaluate import ranks, recall_metrics
from xmodal.retrieval import topk
from xmodal.retrieval.learned import LearnedSimilarity


def planted(n: int, d_query: int, d_gallery: int, noise: float, seed: int, same_space: bool = False):
    """Gallery rows are a fixed random linear image of their query rows (the rows themselves
    when ``same_space``, as after an aligner), plus noise."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, d_query))
    w = np.eye(d_query) if same_space else np.random.default_rng(99).normal(size=(d_query, d_gallery))
    return q.astype(np.float32), (q @ w + noise * rng.normal(size=(n, d_gallery))).astype(np.float32)


def recall_at_1(model: LearnedSimilarity, q: np.ndarray, g: np.ndarray) -> float:
    labels = np.arange(len(q))
    return recall_metrics(ranks(model.scorer(q, g), labels, labels))["R@1"]


@pytest.mark.parametrize(
    ("model", "d_gallery", "same_space"),
    [
        (LearnedSimilarity("mlp", hidden=64, epochs=8), 16, True),
        (LearnedSimilarity("bilinear", rank=16, epochs=8), 24, False),
    ],
)
def test_learned_similarity_beats_chance_on_planted_data(model, d_gallery, same_space):
    q, g = planted(2000, 16, d_gallery, noise=0.5, seed=0, same_space=same_space)
    test_q, test_g = planted(200, 16, d_gallery, noise=0.5, seed=1, same_space=same_space)
    model.fit(q, g, validation=(test_q, test_g))
    r1 = recall_at_1(model, test_q, test_g)
    assert r1 > 20.0  # chance is 0.5 %
    assert model.loss_history_[-1] < model.loss_history_[0] or len(model.loss_history_) <= model.patience + 1


def test_same_seed_same_scores_and_save_load_round_trip(tmp_path):
    q, g = planted(300, 8, 8, noise=0.2, seed=0)
    a = LearnedSimilarity("mlp", hidden=16, epochs=2, seed=3).fit(q, g)
    b = LearnedSimilarity("mlp", hidden=16, epochs=2, seed=3).fit(q, g)
    dense = lambda m: np.concatenate([s for _, s in m.scorer(q[:50], g).chunks()])  # noqa: E731
    np.testing.assert_array_equal(dense(a), dense(b))
    loaded = LearnedSimilarity.load(a.save(tmp_path / "mlp.npz"))
    assert loaded.get_params() == a.get_params() and loaded.dims_ == (8, 8)
    np.testing.assert_allclose(dense(loaded), dense(a), atol=1e-6)


def test_groups_keep_rows_of_one_item_apart():
    model = LearnedSimilarity("bilinear", negatives=3)
    rng = np.random.default_rng(0)
    batch = np.array([10, 11, 12, 13, 14])
    candidates = model._candidates(batch, rng)
    assert candidates.shape == (5, 4)
    assert (candidates[:, 0] == batch).all()
    assert all(row not in set(c[1:]) for row, c in zip(batch, candidates))


def test_learned_scorer_works_with_topk_in_chunks():
    q, g = planted(400, 8, 12, noise=0.1, seed=0)
    model = LearnedSimilarity("bilinear", rank=8, epochs=3).fit(q, g)
    scorer = model.scorer(q, g)
    scorer.chunk_size = 7  # several chunks
    scores, _ = topk(scorer, 5)
    dense = np.concatenate([s for _, s in model.scorer(q, g).chunks()])
    np.testing.assert_allclose(scores[:, 0], dense.max(axis=1), rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_bad_input_is_named():
    q, g = planted(20, 4, 6, noise=0.1, seed=0)
    with pytest.raises(ValueError, match="the mlp form compares rows of one dimension .* got 4 and 6"):
        LearnedSimilarity("mlp", epochs=1).fit(q, g)
    with pytest.raises(ValueError, match="unknown form 'knn'; choose one of mlp, bilinear"):
        LearnedSimilarity("knn", epochs=1).fit(q, g)
    with pytest.raises(ValueError, match="row-paired, got 20 and 19 rows"):
        LearnedSimilarity("bilinear", epochs=1).fit(q, g[:19])
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="training queries contain NaN or inf in 1 row"):
        LearnedSimilarity("bilinear", epochs=1).fit(bad, g)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LearnedSimilarity("bilinear").scorer(q, g)
    fitted = LearnedSimilarity("bilinear", epochs=1).fit(q, g)
    with pytest.raises(ValueError, match=r"fitted on dimensions \(4, 6\), got \(4, 5\)"):
        fitted.scorer(q, g[:, :5])
