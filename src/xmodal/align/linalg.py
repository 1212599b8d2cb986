"""Closed-form solutions behind the aligners: pure functions with checked shapes.

Each function states what it minimises or maximises. Inputs are row-paired: row ``i`` of
``a`` and row ``i`` of ``b`` describe the same example. float32 inputs stay float32 for the
large ``n``-row products (embeddings are float32; this halves the memory traffic); every
small ``d x d`` result is float64 before it is decomposed. Other inputs are float64.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def _check_paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _as_float(a)
    b = _as_float(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected 2-D arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired arrays need the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] == 0:
        raise ValueError("paired arrays are empty")
    return a, b


def least_squares(a: np.ndarray, b: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """The map ``W`` (``a.shape[1] x b.shape[1]``) minimising ``||a W - b||_F^2 + ridge ||W||_F^2``.

    >>> rng = np.random.default_rng(0)
    >>> a, w = rng.normal(size=(50, 4)), rng.normal(size=(4, 3))
    >>> bool(np.allclose(least_squares(a, a @ w), w))
    True
    """
    a, b = _check_paired(a, b)
    return least_squares_from_products(cross_product(a, a), cross_product(a, b), ridge)


def least_squares_from_products(gram: np.ndarray, cross: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """:func:`least_squares` from ``gram = a^T a`` (``d_a x d_a``) and ``cross = a^T b`` (``d_a x d_b``)."""
    gram, cross = _as_float(gram), _as_float(cross)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or cross.ndim != 2 or cross.shape[0] != gram.shape[0]:
        raise ValueError(
            f"expected a square gram and a cross product with as many rows, got {gram.shape}, {cross.shape}"
        )
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    return linalg.solve(gram + ridge * np.eye(gram.shape[0]), cross, assume_a="pos" if ridge > 0 else "sym")


def orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """The semi-orthogonal ``R`` (``a.shape[1] x b.shape[1]``) maximising ``trace(R^T a^T b)``.

    When ``a`` has at most as many columns as ``b``, ``R`` has orthonormal rows, so
    ``||a R||_F = ||a||_F`` and ``R`` minimises ``||a R - b||_F`` (for equal dimensions the
    classic rotation of Schönemann 1966). When ``a`` has more columns, ``R`` has orthonormal
    columns and maximises the inner-product form above. ``R = U V^T`` from the thin SVD
    ``a^T b = U S V^T``. Returns ``(R, trace(S))``; ``trace(S) / ||a||_F^2`` is the optimal
    isotropic scale.

    >>> rng = np.random.default_rng(0)
    >>> q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    >>> a = rng.normal(size=(20, 3))
    >>> bool(np.allclose(orthogonal_procrustes(a, a @ q)[0], q))
    True
    """
    a, b = _check_paired(a, b)
    return procrustes_from_product(cross_product(a, b))


def procrustes_from_product(cross: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`orthogonal_procrustes` from ``cross = a^T b`` (``d_a x d_b``)."""
    cross = _as_float(cross)
    if cross.ndim != 2:
        raise ValueError(f"expected a 2-D cross product, got shape {cross.shape}")
    u, s, vt = linalg.svd(cross, full_matrices=False)
    return u @ vt, float(s.sum())


def inverse_sqrt_psd(c: np.ndarray) -> np.ndarray:
    """``C^{-1/2}`` of a symmetric positive definite matrix, by its eigendecomposition."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {c.shape}")
    values, vectors = linalg.eigh(c)
    # Singular matrices come out of eigh with a smallest eigenvalue of +-eps-level noise:
    # treat anything at or below the numerical-rank tolerance as not positive definite.
    if values.min() <= values.max() * c.shape[0] * np.finfo(np.float64).eps:
        raise ValueError(
            f"matrix is not positive definite (smallest eigenvalue {values.min():.3g}); increase the regularisation"
        )
    return (vectors / np.sqrt(values)) @ vectors.T


def cca(
    a: np.ndarray, b: np.ndarray, n_components: int, reg: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised canonical correlation analysis in closed form.

    Finds projections ``A`` (``d_a x k``) and ``B`` (``d_b x k``) maximising the correlation
    of each pair of columns of ``a A`` and ``b B`` subject to ``A^T C_aa A = B^T C_bb B = I``,
    where ``C_aa = cov(a) + reg * mean(diag(cov(a))) * I`` (likewise for ``b``): whiten each
    side, then take the SVD of the whitened cross-covariance. Inputs are centred here.
    Returns ``(A, B, correlations)`` with correlations in decreasing order.
    """
    a, b = _check_paired(a, b)
    return cca_from_covariances(covariance(a, a), covariance(b, b), covariance(a, b), n_components, reg)


def cca_from_covariances(
    c_aa: np.ndarray, c_bb: np.ndarray, c_ab: np.ndarray, n_components: int, reg: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cca` from the covariances ``C_aa``, ``C_bb`` and the cross-covariance ``C_ab``."""
    if c_aa.ndim != 2 or c_bb.ndim != 2 or c_ab.shape != (c_aa.shape[0], c_bb.shape[0]):
        raise ValueError(f"covariances of mismatched shapes: {c_aa.shape}, {c_bb.shape}, {c_ab.shape}")
    k_max = min(c_ab.shape)
    if not 1 <= n_components <= k_max:
        raise ValueError(f"n_components must be in [1, {k_max}], got {n_components}")
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    whiten_a = inverse_sqrt_psd(_regularise(c_aa, reg))
    whiten_b = inverse_sqrt_psd(_regularise(c_bb, reg))
    cross = whiten_a @ c_ab @ whiten_b
    u, s, vt = linalg.svd(cross, full_matrices=False)
    k = n_components
    return whiten_a @ u[:, :k], whiten_b @ vt[:k].T, s[:k]


def pca_basis(gram: np.ndarray, n_components: int, rows: int) -> np.ndarray:
    """Top ``n_components`` principal axes (``d x k`` columns, by decreasing variance) of the
    ``rows`` rows whose centred product with themselves (or covariance) is ``gram``: the
    orthonormal ``k`` columns that maximise the variance of the rows projected on them."""
    shape = (rows, gram.shape[0])
    if not 1 <= n_components <= min(shape):
        raise ValueError(f"n_components must be in [1, {min(shape)}] for data of shape {shape}, got {n_components}")
    _, vectors = np.linalg.eigh(gram)
    return vectors[:, ::-1][:, :n_components]


def sinkhorn(scores: np.ndarray, epsilon: float, iterations: int = 50) -> np.ndarray:
    """The entropic optimal transport plan between the rows and the columns of ``scores``.

    ``P`` (``n x m``, float32) maximises ``<P, scores> + epsilon * H(P)`` over the plans with
    uniform marginals (``P 1 = 1/n``, ``P^T 1 = 1/m``; ``H`` the entropy), approximated by
    ``iterations`` Sinkhorn-Knopp scalings of ``exp((scores - max) / epsilon)`` (Cuturi 2013).
    ``P`` sums to 1. A small ``epsilon`` gives a near one-to-one plan; a large one spreads
    each row's mass over many columns.

    >>> p = sinkhorn(np.array([[1.0, 0.0], [0.0, 1.0]]), 0.1)
    >>> bool(np.allclose(p, [[0.5, 0.0], [0.0, 0.5]], atol=1e-4))
    True
    """
    plan, u, v = _sinkhorn_scalings(scores, epsilon, iterations)
    plan *= u[:, None]
    plan *= v[None, :]
    return plan


def sinkhorn_column_potentials(scores: np.ndarray, epsilon: float, iterations: int = 50) -> np.ndarray:
    """``g`` (``m``, float64) such that row ``i`` of :func:`sinkhorn`'s plan is ordered like
    ``scores[i] / epsilon + g``: the log of the column scalings, up to one constant.

    A column that many rows score highly (a hub) gets a low ``g``. Added to the scores of
    rows that were not in ``scores`` (``s / epsilon + g``), it ranks each new row's columns as
    the plan would if that row's weight were negligible. One half-step from ``u = 1`` (``g`` =
    minus the column's log-sum-exp of ``scores / epsilon``) would be the inverted softmax.
    """
    _, _, v = _sinkhorn_scalings(scores, epsilon, iterations)
    return np.log(np.maximum(v.astype(np.float64), np.finfo(np.float64).tiny))


def _sinkhorn_scalings(
    scores: np.ndarray, epsilon: float, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(K, u, v)``: the kernel ``exp((scores - max) / epsilon)`` (float32) and the row and column
    scalings after ``iterations`` Sinkhorn-Knopp steps (the plan is ``diag(u) K diag(v)``)."""
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"expected a non-empty 2-D score matrix, got shape {scores.shape}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    n, m = scores.shape
    kernel = np.asarray(scores, dtype=np.float32) - np.float32(scores.max())
    kernel /= np.float32(epsilon)
    np.exp(kernel, out=kernel)
    u: np.ndarray = np.ones(n, np.float32)
    v: np.ndarray = np.ones(m, np.float32)
    tiny = np.finfo(np.float32).tiny
    for _ in range(iterations):
        u = np.float32(1 / n) / np.maximum(kernel @ v, tiny)
        v = np.float32(1 / m) / np.maximum(kernel.T @ u, tiny)
    return kernel, u, v


def covariance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-covariance ``(a - mean a)^T (b - mean b) / n`` (float64), without centred copies."""
    mean_a = a.mean(axis=0, dtype=np.float64)
    mean_b = b.mean(axis=0, dtype=np.float64)
    return cross_product(a, b) / a.shape[0] - np.outer(mean_a, mean_b)


PRODUCT_BLOCK_ROWS = 32_768  # rows per block of a product taken in the inputs' precision


def cross_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^T b`` as float64: each block of :data:`PRODUCT_BLOCK_ROWS` rows multiplied in the
    inputs' precision, the blocks summed in float64 (so float32 rounding does not grow with
    the number of rows)."""
    if len(a) <= PRODUCT_BLOCK_ROWS:
        return np.asarray(a.T @ b, dtype=np.float64)
    total = np.zeros((a.shape[1], b.shape[1]))
    for start in range(0, len(a), PRODUCT_BLOCK_ROWS):
        rows = slice(start, start + PRODUCT_BLOCK_ROWS)
        total += a[rows].T @ b[rows]
    return total


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == np.float32 else x.astype(np.float64)


def _regularise(cov: np.ndarray, reg: float) -> np.ndarray:
    return cov + reg * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
