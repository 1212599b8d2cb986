"""Geometry of two embedding clouds: modality gap, Wasserstein distances, CKA, alignment,
uniformity and hubness. Pure functions on arrays; none normalises its input (the analysis
pipeline L2-normalises rows first, the geometry cosine retrieval sees)."""

from __future__ import annotations

import numpy as np
import ot
from scipy import stats

from xmodal.core.arrays import check_embeddings, check_int


def centroid_gap(x: np.ndarray, y: np.ndarray) -> float:
    """``|mean(x) - mean(y)|_2``: the modality gap of Liang et al. (2022) when rows are unit."""
    x, y = _same_dim(x, y)
    return float(np.linalg.norm(x.mean(0, dtype=np.float64) - y.mean(0, dtype=np.float64)))


def gaussian_w2(x: np.ndarray, y: np.ndarray) -> float:
    """2-Wasserstein distance between the Gaussians fitted to ``x`` and ``y`` (closed form):

    ``W2² = |m_x - m_y|² + tr(S_x) + tr(S_y) - 2 tr((S_x^½ S_y S_x^½)^½)``

    with the maximum-likelihood covariances ``S``. The last trace is the sum of the square
    roots of the eigenvalues of ``S_x S_y``, found in a ``d x d`` matrix or, when a cloud has
    fewer rows than dimensions, in the smaller Gram matrix of the centred rows (same value).
    """
    x, y = _same_dim(x, y)
    x, y = x.astype(np.float64), y.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m, d = len(x), len(y), x.shape[1]
    if min(n, m) < d:  # nonzero eig(S_x S_y) = squared singular values of xc yc^T / sqrt(nm)
        cross = xc @ yc.T / np.sqrt(n * m)
        product = cross.T @ cross if m <= n else cross @ cross.T
    else:
        root = _psd_sqrt(xc.T @ xc / n)
        product = root @ (yc.T @ yc / m) @ root
    root_trace = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None)))
    squared = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.sum(xc**2) / n + np.sum(yc**2) / m - 2 * root_trace
    return float(np.sqrt(max(squared, 0.0)))


def exact_w2(x: np.ndarray, y: np.ndarray, n_samples: int | None = 1000, seed: int = 0) -> float:
    """2-Wasserstein distance between the empirical distributions of ``x`` and ``y`` (uniform
    weights), by exact optimal transport (POT's network simplex) on squared Euclidean costs.

    Exact OT costs O(n³): with ``n_samples``, each cloud is first subsampled (without
    replacement, ``seed``) to at most that many rows; ``None`` uses every row.
    """
    x, y = _same_dim(x, y)
    rng = np.random.default_rng(seed)
    x, y = (_subsample(a, n_samples, rng).astype(np.float64) for a in (x, y))
    cost = ot.dist(x, y, metric="sqeuclidean")
    squared = ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10**7)
    return float(np.sqrt(max(squared, 0.0)))


def sliced_w2(x: np.ndarray, y: np.ndarray, n_projections: int = 1000, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance, scaled by ``sqrt(d)``:

    ``sqrt(d · E_θ[W2²(θ·x, θ·y)])`` over ``n_projections`` uniform random unit directions θ
    (``seed``). Without the ``sqrt(d)`` factor a shift by ``δ`` gives ``|δ|/sqrt(d)``; with it,
    a shift gives ``|δ|`` like W2, so the two read on one scale.
    """
    x, y = _same_dim(x, y)
    n_projections = check_int(n_projections, "n_projections", minimum=1)
    d = x.shape[1]
    sliced = ot.sliced_wasserstein_distance(
        x.astype(np.float64), y.astype(np.float64), n_projections=n_projections, p=2, seed=seed
    )
    return float(np.sqrt(d) * sliced)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of row-paired ``x`` (n, d_x) and ``y`` (n, d_y):
    ``|Yc^T Xc|_F² / (|Xc^T Xc|_F |Yc^T Yc|_F)`` on column-centred data; 1 for spaces equal up
    to rotation and isotropic scale, near 0 for unrelated ones. Dimensions may differ."""
    x = check_embeddings(x, "x").astype(np.float64)
    y = check_embeddings(y, "y").astype(np.float64)
    if len(x) != len(y):
        raise ValueError(f"linear_cka needs row-paired inputs, got {len(x)} and {len(y)} rows")
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator) if denominator > 0 else 0.0


def alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Alignment of Wang & Isola (2020): mean ``|x_i - y_i|²`` over row-paired positives
    (lower is better aligned; on unit rows it lies in [0, 4])."""
    x, y = _same_dim(x, y)
    if len(x) != len(y):
        raise ValueError(f"alignment needs row-paired inputs, got {len(x)} and {len(y)} rows")
    return float(np.mean(np.sum((x.astype(np.float64) - y) ** 2, axis=1)))


def uniformity(x: np.ndarray, t: float = 2.0, n_samples: int | None = 2000, seed: int = 0) -> float:
    """Uniformity of Wang & Isola (2020): ``log mean_{i<j} exp(-t |x_i - x_j|²)`` (lower is more
    uniform), on at most ``n_samples`` rows drawn with ``seed``."""
    x = check_embeddings(x, "x")
    x = _subsample(x, n_samples, np.random.default_rng(seed)).astype(np.float64)
    if len(x) < 2:
        raise ValueError("uniformity needs at least 2 rows")
    squared = np.sum(x**2, 1)
    distances = squared[:, None] + squared[None, :] - 2 * x @ x.T
    upper = distances[np.triu_indices(len(x), k=1)]
    return float(np.log(np.mean(np.exp(-t * np.maximum(upper, 0.0)))))


def hubness(top_indices: np.ndarray, n_gallery: int) -> dict[str, float]:
    """Hubness of a gallery from each query's top-k list ``top_indices`` (n_queries, k):
    ``{"skew": skewness of the k-occurrence N_k, "never": % of gallery items in no top-k list,
    "max": the largest N_k}`` (Radovanović et al. 2010)."""
    top = np.asarray(top_indices)
    if top.ndim != 2 or top.size == 0:
        raise ValueError(f"top_indices must be a non-empty 2-D array, got shape {top.shape}")
    if top.min() < 0 or top.max() >= n_gallery:
        raise ValueError(f"top_indices must lie in 0..{n_gallery - 1}")
    occurrences = np.bincount(top.ravel(), minlength=n_gallery)
    skew = float(stats.skew(occurrences)) if occurrences.std() > 0 else 0.0
    return {"skew": skew, "never": 100.0 * float(np.mean(occurrences == 0)), "max": float(occurrences.max())}


def _same_dim(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_embeddings(x, "x"), check_embeddings(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but y has {y.shape[1]}; compare clouds in one space")
    return x, y


def _subsample(x: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or len(x) <= n:
        return x
    return x[np.sort(rng.choice(len(x), size=check_int(n, "n_samples", minimum=1), replace=False))]


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
