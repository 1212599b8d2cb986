"""Known answers for the geometry measures: shifts, identical clouds, rotations, hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from xmodal.analysis.geometry import (
    alignment,
    centroid_gap,
    exact_w2,
    gaussian_w2,
    hubness,
    linear_cka,
    sliced_w2,
    uniformity,
)

DELTA = np.array([3.0, -1.0, 0.5, 2.0])  # |δ| = 3.775


def gaussian(n: int, seed: int, d: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_shifted_cloud_is_exactly_delta_away():
    x = gaussian(400, 0)
    norm = np.linalg.norm(DELTA)
    assert exact_w2(x, x + DELTA, n_samples=None) == pytest.approx(norm, rel=1e-6)
    assert gaussian_w2(x, x + DELTA) == pytest.approx(norm, rel=1e-6)
    assert sliced_w2(x, x + DELTA, n_projections=4000) == pytest.approx(norm, rel=0.05)


def test_independent_gaussians_shifted_by_delta():
    x, y = gaussian(1500, 1), gaussian(1500, 2) + DELTA
    norm = np.linalg.norm(DELTA)
    assert gaussian_w2(x, y) == pytest.approx(norm, rel=0.02)
    # Two samples of one law are a little apart (finite-sample transport), so a bit above |δ|.
    assert norm <= exact_w2(x, y, n_samples=None) <= 1.1 * norm
    assert sliced_w2(x, y, n_projections=4000) == pytest.approx(norm, rel=0.05)


def test_gaussian_w2_is_the_same_with_fewer_rows_than_dimensions():
    """The Gram-matrix route (rows < dimensions) agrees with the covariance formula."""
    from scipy.linalg import sqrtm

    x, y = gaussian(30, 11, d=50), 0.5 * gaussian(40, 12, d=50) + 0.3
    sx, sy = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    root = np.real(sqrtm(sx))
    reference = (
        np.sum((x.mean(0) - y.mean(0)) ** 2)
        + np.trace(sx)
        + np.trace(sy)
        - 2 * np.trace(np.real(sqrtm(root @ sy @ root)))
    )
    assert gaussian_w2(x, y) == pytest.approx(np.sqrt(reference), rel=1e-4)
    assert gaussian_w2(y, x) == pytest.approx(np.sqrt(reference), rel=1e-4)


def test_identical_and_permuted_clouds():
    x = gaussian(300, 3)
    permuted = x[np.random.default_rng(0).permutation(len(x))]
    assert exact_w2(x, permuted, n_samples=None) == pytest.approx(0.0, abs=1e-6)
    assert gaussian_w2(x, permuted) == pytest.approx(0.0, abs=1e-5)
    assert sliced_w2(x, permuted) == pytest.approx(0.0, abs=1e-6)
    assert centroid_gap(x, permuted) == pytest.approx(0.0, abs=1e-6)
    y = gaussian(300, 4) + 1.0
    shuffled = y[::-1]
    for measure in (exact_w2, gaussian_w2, sliced_w2, centroid_gap):
        assert measure(x, shuffled) == pytest.approx(measure(x, y), rel=1e-5)


def test_exact_w2_subsamples_deterministically():
    x, y = gaussian(3000, 5), gaussian(3000, 6) + 1.0
    assert exact_w2(x, y, n_samples=500, seed=1) == exact_w2(x, y, n_samples=500, seed=1)
    assert exact_w2(x, y, n_samples=500, seed=1) != exact_w2(x, y, n_samples=500, seed=2)


def test_centroid_gap_of_two_cones():
    eps = 0.2
    e = np.eye(3)
    x = np.stack([e[0] + eps * e[2], e[0] - eps * e[2]]) / np.sqrt(1 + eps**2)
    y = np.stack([e[1] + eps * e[2], e[1] - eps * e[2]]) / np.sqrt(1 + eps**2)
    assert centroid_gap(x, y) == pytest.approx(np.sqrt(2) / np.sqrt(1 + eps**2))


def test_cka_on_constructed_cases():
    x = gaussian(500, 7, d=6)
    rotated = 3.0 * x @ ortho_group.rvs(6, random_state=0)
    assert linear_cka(x, rotated) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, rotated + 5.0) == pytest.approx(1.0, abs=1e-9)  # centring
    assert linear_cka(x, gaussian(500, 8, d=10)) < 0.05  # unrelated, different dimension
    half = np.hstack([x[:, :3], gaussian(500, 9, d=3)])
    assert 0.3 < linear_cka(x, half) < 0.7


def test_alignment_and_uniformity_by_hand():
    x = np.eye(3)
    assert alignment(x, x) == 0.0
    assert alignment(x, -x) == pytest.approx(4.0)
    two = np.array([[1.0, 0.0], [-1.0, 0.0]])  # |x1 - x2|² = 4
    assert uniformity(two, t=2.0) == pytest.approx(-8.0)
    spread, bunched = gaussian(400, 10), 0.1 * gaussian(400, 10)
    assert uniformity(spread) < uniformity(bunched)


def test_hubness_by_hand():
    top = np.array([[0, 1], [0, 2], [0, 1], [0, 3]])  # item 0 is a hub; 4 and 5 never come up
    result = hubness(top, n_gallery=6)
    occurrences = np.array([4, 2, 1, 1, 0, 0])
    from scipy.stats import skew

    assert result == {"skew": pytest.approx(skew(occurrences)), "never": pytest.approx(100 * 2 / 6), "max": 4.0}
    assert hubness(np.array([[0], [1]]), n_gallery=2)["skew"] == 0.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="x has dimension 3 but y has 4"):
        exact_w2(np.ones((5, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="row-paired inputs, got 5 and 4 rows"):
        linear_cka(np.ones((5, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="y contain NaN or inf"):
        gaussian_w2(np.ones((5, 3)), np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match=r"top_indices must lie in 0..2"):
        hubness(np.array([[3]]), n_gallery=3)
