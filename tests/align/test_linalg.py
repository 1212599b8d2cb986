"""Known-answer tests for the closed-form solvers in xmodal.align.linalg."""

import numpy as np
import pytest

from xmodal.align import linalg
from xmodal.align.linalg import cca, inverse_sqrt_psd, least_squares, orthogonal_procrustes


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A ``rows x cols`` matrix with orthonormal columns (rows >= cols), from QR."""
    q, r = np.linalg.qr(rng.normal(size=(rows, cols)))
    return q * np.sign(np.diag(r))


# --- orthogonal_procrustes ----------------------------------------------------------------


def test_procrustes_recovers_planted_rotation_square():
    rng = np.random.default_rng(0)
    rotation = _orthonormal_columns(rng, 64, 64)
    a = rng.normal(size=(300, 64))
    r, singular_sum = orthogonal_procrustes(a, a @ rotation)
    assert r.shape == (64, 64)
    assert np.max(np.abs(r - rotation)) < 1e-6
    np.testing.assert_allclose(r.T @ r, np.eye(64), atol=1e-10)
    np.testing.assert_allclose(r @ r.T, np.eye(64), atol=1e-10)
    # b = a R  =>  a^T b = a^T a R, whose singular values sum to trace(a^T a) = ||a||_F^2.
    assert singular_sum == pytest.approx(np.sum(a * a), rel=1e-10)


def test_procrustes_recovers_planted_rotation_and_isotropic_scale():
    rng = np.random.default_rng(1)
    rotation = _orthonormal_columns(rng, 64, 64)
    a = rng.normal(size=(300, 64))
    scale = 2.75
    r, singular_sum = orthogonal_procrustes(a, scale * a @ rotation)
    assert np.max(np.abs(r - rotation)) < 1e-6
    assert singular_sum / np.sum(a * a) == pytest.approx(scale, rel=1e-10)


def test_procrustes_fewer_source_columns_orthonormal_rows():
    # d_a = 32 < d_b = 96: R (32 x 96) has orthonormal rows and is recovered for any full-rank a.
    rng = np.random.default_rng(2)
    planted = _orthonormal_columns(rng, 96, 32).T  # 32 x 96, orthonormal rows
    a = rng.normal(size=(200, 32)) * np.linspace(0.5, 3.0, 32)  # anisotropic on purpose
    r, singular_sum = orthogonal_procrustes(a, a @ planted)
    assert r.shape == (32, 96)
    assert np.max(np.abs(r - planted)) < 1e-6
    np.testing.assert_allclose(r @ r.T, np.eye(32), atol=1e-10)
    assert singular_sum == pytest.approx(np.sum(a * a), rel=1e-10)
    # With orthonormal rows the map preserves norms, ||a R|| = ||a||.
    assert np.linalg.norm(a @ r) == pytest.approx(np.linalg.norm(a), rel=1e-10)


def test_procrustes_more_source_columns_orthonormal_columns():
    # d_a = 96 > d_b = 32: R (96 x 32) has orthonormal columns and maximises trace(R^T a^T b).
    # With a^T a = c I (a = scaled orthonormal columns), a^T b = c R_planted, whose polar
    # factor is R_planted itself, so the planted map is the known answer.
    rng = np.random.default_rng(3)
    planted = _orthonormal_columns(rng, 96, 32)  # 96 x 32, orthonormal columns
    a = 4.0 * _orthonormal_columns(rng, 400, 96)  # a^T a = 16 I
    np.testing.assert_allclose(a.T @ a, 16.0 * np.eye(96), atol=1e-10)
    r, singular_sum = orthogonal_procrustes(a, a @ planted)
    assert r.shape == (96, 32)
    assert np.max(np.abs(r - planted)) < 1e-6
    np.testing.assert_allclose(r.T @ r, np.eye(32), atol=1e-10)
    assert singular_sum == pytest.approx(16.0 * 32, rel=1e-10)


def test_procrustes_maximises_trace_against_random_semi_orthogonal_maps():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(100, 20)), rng.normal(size=(100, 12))
    r, singular_sum = orthogonal_procrustes(a, b)
    best = np.trace(r.T @ a.T @ b)
    assert best == pytest.approx(singular_sum, rel=1e-10)
    for _ in range(50):
        other = _orthonormal_columns(rng, 20, 12)
        assert np.trace(other.T @ a.T @ b) <= best + 1e-9


def test_procrustes_rejects_mismatched_rows_and_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows, got 10 and 11"):
        orthogonal_procrustes(np.ones((10, 3)), np.ones((11, 3)))
    with pytest.raises(ValueError, match="expected 2-D arrays"):
        orthogonal_procrustes(np.ones(10), np.ones((10, 3)))
    with pytest.raises(ValueError, match="empty"):
        orthogonal_procrustes(np.ones((0, 3)), np.ones((0, 3)))


# --- least_squares ------------------------------------------------------------------------


def test_least_squares_recovers_planted_map():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(500, 40))
    w = rng.normal(size=(40, 30))
    coef = least_squares(a, a @ w, ridge=0.0)
    assert coef.shape == (40, 30)
    assert np.max(np.abs(coef - w)) < 1e-8


@pytest.mark.parametrize("ridge", [0.1, 5.0, 300.0])
def test_least_squares_ridge_matches_closed_form(ridge):
    rng = np.random.default_rng(6)
    a = rng.normal(size=(500, 40))
    b = a @ rng.normal(size=(40, 30)) + rng.normal(size=(500, 30))
    expected = np.linalg.inv(a.T @ a + ridge * np.eye(40)) @ a.T @ b
    np.testing.assert_allclose(least_squares(a, b, ridge=ridge), expected, rtol=1e-9, atol=1e-12)
    # Ridge shrinks the solution towards zero.
    assert np.linalg.norm(least_squares(a, b, ridge=ridge)) < np.linalg.norm(least_squares(a, b))


def test_least_squares_errors():
    a, b = np.ones((10, 3)), np.ones((10, 2))
    with pytest.raises(ValueError, match=r"ridge must be >= 0, got -1"):
        least_squares(a, b, ridge=-1.0)
    with pytest.raises(ValueError, match="same number of rows, got 10 and 9"):
        least_squares(a, b[:9])


# --- cca ----------------------------------------------------------------------------------

RHOS = np.array([0.9, 0.6, 0.3])


def _planted_cca_views(seed: int = 7, n: int = 20000):
    """Two views sharing 3 latent dims with correlations RHOS, mixed into 12-/9-d spaces."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = z
    y = RHOS * z + np.sqrt(1 - RHOS**2) * rng.normal(size=(n, 3))
    # Independent noise dimensions on each side, then random invertible mixing + an offset.
    x_full = np.hstack([x, rng.normal(size=(n, 9))])
    y_full = np.hstack([y, rng.normal(size=(n, 6))])
    mix_a = rng.normal(size=(12, 12)) + 3 * np.eye(12)
    mix_b = rng.normal(size=(9, 9)) + 3 * np.eye(9)
    assert abs(np.linalg.det(mix_a)) > 1e-3 and abs(np.linalg.det(mix_b)) > 1e-3
    a = x_full @ mix_a + rng.normal(size=12)
    b = y_full @ mix_b + rng.normal(size=9)
    return a, b


def test_cca_recovers_planted_correlations():
    a, b = _planted_cca_views()
    proj_a, proj_b, corr = cca(a, b, 3, reg=0.0)
    assert proj_a.shape == (12, 3) and proj_b.shape == (9, 3) and corr.shape == (3,)
    np.testing.assert_allclose(corr, RHOS, atol=0.02)
    assert np.all(np.diff(corr) < 0)

    ac = a - a.mean(axis=0)
    bc = b - b.mean(axis=0)
    n = a.shape[0]
    cov_aa, cov_bb = ac.T @ ac / n, bc.T @ bc / n
    # Constraint A^T C_aa A = I: projected columns have unit variance and are uncorrelated.
    np.testing.assert_allclose(proj_a.T @ cov_aa @ proj_a, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(proj_b.T @ cov_bb @ proj_b, np.eye(3), atol=1e-8)
    # The cross-covariance of the projections is diag(correlations).
    pa, pb = ac @ proj_a, bc @ proj_b
    np.testing.assert_allclose(pa.T @ pb / n, np.diag(corr), atol=1e-8)
    # ... and each pair's Pearson correlation is the reported correlation.
    for i in range(3):
        assert np.corrcoef(pa[:, i], pb[:, i])[0, 1] == pytest.approx(corr[i], abs=1e-8)


def test_cca_beyond_planted_components_is_near_zero():
    a, b = _planted_cca_views()
    _, _, corr = cca(a, b, 9, reg=0.0)
    np.testing.assert_allclose(corr[:3], RHOS, atol=0.02)
    assert np.all(corr[3:] < 0.05)


def test_cca_regularisation_shrinks_correlations():
    a, b = _planted_cca_views(n=5000)
    _, _, plain = cca(a, b, 3, reg=0.0)
    _, _, shrunk = cca(a, b, 3, reg=0.5)
    assert np.all(shrunk < plain)


@pytest.mark.parametrize("k", [0, -1, 10])
def test_cca_rejects_bad_n_components(k):
    a, b = _planted_cca_views(n=200)
    with pytest.raises(ValueError, match=rf"n_components must be in \[1, 9\], got {k}"):
        cca(a, b, k)


def test_cca_rejects_negative_reg_and_mismatched_rows():
    a, b = _planted_cca_views(n=200)
    with pytest.raises(ValueError, match="reg must be >= 0"):
        cca(a, b, 2, reg=-0.1)
    with pytest.raises(ValueError, match="same number of rows"):
        cca(a, b[:100], 2)


def test_cca_rank_deficient_without_regularisation_raises():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(100, 5))
    a = np.hstack([a, a[:, :1]])  # duplicated column: singular covariance
    b = rng.normal(size=(100, 4))
    with pytest.raises(ValueError, match="regularisation"):
        cca(a, b, 2, reg=0.0)
    _, _, corr = cca(a, b, 2, reg=1e-3)  # regularisation makes it solvable
    assert np.all(np.isfinite(corr))


# --- inverse_sqrt_psd ---------------------------------------------------------------------


def test_inverse_sqrt_psd_of_random_spd_matrix():
    rng = np.random.default_rng(9)
    m = rng.normal(size=(30, 30))
    c = m @ m.T + 0.5 * np.eye(30)
    w = inverse_sqrt_psd(c)
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    np.testing.assert_allclose(w @ w @ c, np.eye(30), atol=1e-8)
    np.testing.assert_allclose(w @ c @ w, np.eye(30), atol=1e-8)
    assert np.all(np.linalg.eigvalsh(w) > 0)


def test_inverse_sqrt_psd_of_diagonal_matrix():
    w = inverse_sqrt_psd(np.diag([4.0, 9.0, 0.25]))
    np.testing.assert_allclose(w, np.diag([0.5, 1 / 3, 2.0]), atol=1e-12)


def test_inverse_sqrt_psd_rejects_non_positive_definite():
    with pytest.raises(ValueError, match="not positive definite.*regularisation"):
        inverse_sqrt_psd(np.diag([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="not positive definite.*regularisation"):
        inverse_sqrt_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))  # eigenvalues 3, -1


def test_inverse_sqrt_psd_rejects_non_square():
    with pytest.raises(ValueError, match="square matrix"):
        inverse_sqrt_psd(np.ones((3, 2)))


@pytest.mark.parametrize("seed", range(8))
def test_inverse_sqrt_psd_rejects_numerically_singular_psd(seed):
    # m m^T has rank 5 in 6 dims; eigh returns its zero eigenvalue as +-1e-16 noise, which
    # must still count as "not positive definite" rather than give a ~1e8-scale result.
    m = np.random.default_rng(seed).normal(size=(6, 5))
    with pytest.raises(ValueError, match="not positive definite.*regularisation"):
        inverse_sqrt_psd(m @ m.T)


def test_inverse_sqrt_psd_accepts_ill_conditioned_but_definite():
    c = np.diag([1.0, 1e-8, 1e-10])
    np.testing.assert_allclose(inverse_sqrt_psd(c), np.diag([1.0, 1e4, 1e5]), rtol=1e-10)


def test_cross_product_sums_float32_blocks_in_float64(monkeypatch):
    """Past a block of rows, a float32 product is taken block by block and summed in float64:
    the sum of the blocks' own products, and as close to the exact product as one block is."""
    monkeypatch.setattr(linalg, "PRODUCT_BLOCK_ROWS", 1000)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3500, 7)).astype(np.float32)
    b = rng.normal(size=(3500, 5)).astype(np.float32)
    blocked = linalg.cross_product(a, b)
    assert blocked.dtype == np.float64
    blocks = sum((a[i : i + 1000].T @ b[i : i + 1000]).astype(np.float64) for i in range(0, 3500, 1000))
    np.testing.assert_array_equal(blocked, blocks)
    exact = a.astype(np.float64).T @ b.astype(np.float64)
    np.testing.assert_allclose(blocked, exact, rtol=1e-5, atol=1e-3)


def test_sinkhorn_has_uniform_marginals_and_recovers_a_planted_matching():
    rng = np.random.default_rng(0)
    truth = rng.permutation(40)
    scores = rng.normal(size=(40, 40)) * 0.1
    scores[np.arange(40), truth] += 1.0  # each row's true column stands out
    plan = linalg.sinkhorn(scores, 0.05)
    np.testing.assert_allclose(plan.sum(1), 1 / 40, rtol=1e-3)
    np.testing.assert_allclose(plan.sum(0), 1 / 40, rtol=1e-3)
    assert (plan.argmax(1) == truth).all() and plan[np.arange(40), truth].sum() > 0.99
    wide = linalg.sinkhorn(scores[:10], 100.0)  # 10 x 40: each row spreads over the columns
    np.testing.assert_allclose(wide.sum(0), 1 / 40, rtol=1e-3)
    assert wide.max() < 2 / 400
    for bad, message in [(np.zeros((0, 3)), "non-empty 2-D"), (np.array([[np.nan]]), "NaN")]:
        with pytest.raises(ValueError, match=message):
            linalg.sinkhorn(bad, 0.1)
    with pytest.raises(ValueError, match="epsilon must be positive"):
        linalg.sinkhorn(scores, 0.0)
