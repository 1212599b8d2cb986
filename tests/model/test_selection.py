"""Cross-validated regularisation and the small-data warning, on planted problems."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import CCAAligner, LeastSquaresAligner, ProcrustesAligner
from xmodal.align.heads import HeadAligner
from xmodal.model.selection import candidates, cross_validate, small_data_warning


def planted(n: int, d: int, noise: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Two views of ``n`` items sharing a 5-d latent factor, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    return {
        m: (z @ rng.normal(size=(5, d)) + noise * rng.normal(size=(n, d))).astype(np.float32) for m in ("text", "image")
    }


def test_noiseless_rotation_keeps_the_smallest_ridge():
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    a = rng.normal(size=(400, 16)).astype(np.float32)
    selection = cross_validate(LeastSquaresAligner(), {"text": a, "image": a @ rotation}, np.arange(400))
    assert selection.params == {"ridge": 0.1}
    assert selection.scores[0]["MRR"] == 1.0


def test_few_noisy_pairs_choose_more_regularisation_and_do_better():
    data = planted(80, 300, noise=5.0)
    aligner = LeastSquaresAligner()
    selection = cross_validate(aligner, data, np.arange(80), folds=5, seed=0)
    assert selection.params["ridge"] >= 100 and aligner.ridge == selection.params["ridge"]
    scores = {s["ridge"]: s["MRR"] for s in selection.scores}
    assert scores[selection.params["ridge"]] > scores[0.1] + 0.05
    assert not aligner.is_fitted  # chosen, not fitted
    assert cross_validate(LeastSquaresAligner(), data, np.arange(80), seed=0).scores == selection.scores  # seeded


def test_candidates_respect_the_data():
    grid = candidates(CCAAligner(), {"text": 384, "image": 1280}, n_train=100)
    assert {c["n_components"] for c in grid} == {16, 32, 64, 100}  # 128 and 256 clipped to the 100 rows
    assert {c["n_components"] for c in candidates(ProcrustesAligner(), {"a": 20, "b": 30}, 500)} == {None, 16, 20}
    with pytest.raises(ValueError, match="--auto chooses the regularisation of .* not HeadAligner"):
        candidates(HeadAligner(), {"a": 2, "b": 2}, 100)


def test_groups_never_straddle_folds():
    """Five captions of one image stay in one fold: rows of a group are held out together."""
    data = planted(60, 8, noise=0.5)
    groups = np.repeat(np.arange(30), 2)
    selection = cross_validate(CCAAligner(), data, groups, folds=3)
    assert set(selection.params) == {"n_components", "reg", "weight_power"}
    with pytest.raises(ValueError, match="3 groups are too few for 5-fold"):
        cross_validate(CCAAligner(), data, np.arange(60) % 3)


def test_small_data_warning():
    assert small_data_warning(6000, {"text": 384, "image": 1280}, auto=False) is None
    warning = small_data_warning(300, {"text": 384, "image": 1280}, auto=False)
    assert warning is not None and "only 300 training items for 1280-dimensional" in warning and "--auto" in warning
    assert "chosen by cross-validation" in str(small_data_warning(300, {"text": 384, "image": 1280}, auto=True))
    with pytest.raises(ValueError, match="2 training items are too few to fit an aligner"):
        small_data_warning(2, {"text": 384, "image": 1280}, auto=False)


def test_equal_values_of_two_items_both_take_part():
    """Two items with the same caption embedding (a repeated description) stay two queries."""
    data = planted(60, 8, noise=0.3)
    data["text"][1::2] = data["text"][0::2]  # items 2i and 2i+1: one caption embedding
    selection = cross_validate(LeastSquaresAligner(), data, np.arange(60), folds=3)
    assert selection.params["ridge"] in (0.1, 1.0, 10.0, 100.0, 1000.0)
