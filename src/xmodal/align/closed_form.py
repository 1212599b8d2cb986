"""Closed-form aligners: identity, least squares, orthogonal Procrustes, CCA, pivot.

All fit in seconds on a CPU from row-paired embeddings. Least squares and Procrustes map a
``source`` modality into the ``target`` modality's space (choose the direction with the two
parameters); CCA projects both modalities into a new ``n_components``-dimensional space.
:class:`PivotAligner` maps any number of modalities into one ``pivot`` modality's space, each
from the rows it shares with the pivot: two modalities never seen together (speech and text,
each paired with images only) become comparable through it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xmodal.align import linalg
from xmodal.align.base import Aligner
from xmodal.align.statistics import Statistics


class IdentityAligner(Aligner):
    """No map: for two encoders that already share a space (same dimension)."""

    statistical = True

    def accepts(self, dims: Mapping[str, int]) -> bool:
        return len(set(dims.values())) == 1

    def _solve(self, stats: Statistics) -> None:
        if len(set(self.dims_.values())) != 1:
            raise ValueError(f"IdentityAligner needs modalities of equal dimension, got {self.dims_}")

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        return x


class _DirectedAligner(Aligner):
    """Maps ``source`` into the (optionally centred) space of ``target``, solved from the
    centred products of the two (:meth:`Statistics.centred`)."""

    statistical = True

    def __init__(self, source: str, target: str, center: bool, normalize: bool):
        super().__init__(normalize=normalize)
        self.source = source
        self.target = target
        self.center = center

    def _solve(self, stats: Statistics) -> None:
        if {self.source, self.target} != set(stats.modalities) or self.source == self.target:
            raise ValueError(
                f"{type(self).__name__}(source={self.source!r}, target={self.target!r}) "
                f"does not match the fitted modalities {list(stats.modalities)}"
            )
        self.mean_ = {m: stats.mean(m) if self.center else np.zeros(d) for m, d in stats.dims.items()}
        source, target = self.source, self.target
        self._solve_map(
            stats.centred(source, source, self.center),
            stats.centred(target, target, self.center),
            stats.centred(source, target, self.center),
            stats.count,
        )

    def _solve_map(self, gram_source: np.ndarray, gram_target: np.ndarray, cross: np.ndarray, rows: int) -> None:
        """Learn the map from the centred products of source with itself, target with itself,
        and source with target, over ``rows`` rows."""
        raise NotImplementedError

    def _map(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reduce(self, x: np.ndarray, modality: str) -> np.ndarray:
        """Optional per-modality reduction applied after centring."""
        return x

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        x = self._reduce(x - self.mean_[modality], modality)
        return self._map(x) if modality == self.source else x


class LeastSquaresAligner(_DirectedAligner):
    """Ridge regression from ``source`` to ``target``: ``min ||A W - B||^2 + ridge ||W||^2``."""

    def __init__(
        self,
        source: str = "text",
        target: str = "image",
        ridge: float = 1.0,
        center: bool = True,
        normalize: bool = True,
    ):
        super().__init__(source, target, center, normalize)
        self.ridge = ridge

    def _solve_map(self, gram_source: np.ndarray, gram_target: np.ndarray, cross: np.ndarray, rows: int) -> None:
        self.coef_ = linalg.least_squares_from_products(gram_source, cross, ridge=self.ridge)

    def _map(self, a: np.ndarray) -> np.ndarray:
        return a @ self.coef_


class ProcrustesAligner(_DirectedAligner):
    """Orthogonal Procrustes from ``source`` to ``target`` (semi-orthogonal if dims differ).

    ``n_components`` first reduces each modality with its own PCA (fitted on the training
    rows) so both sides share a dimension and the map is a true rotation; ``scale`` adds
    the optimal isotropic scaling.
    """

    def __init__(
        self,
        source: str = "text",
        target: str = "image",
        n_components: int | None = None,
        center: bool = True,
        scale: bool = False,
        normalize: bool = True,
    ):
        super().__init__(source, target, center, normalize)
        self.n_components = n_components
        self.scale = scale

    def _solve_map(self, gram_source: np.ndarray, gram_target: np.ndarray, cross: np.ndarray, rows: int) -> None:
        if self.n_components is not None:
            basis_source, basis_target = (
                linalg.pca_basis(g, self.n_components, rows) for g in (gram_source, gram_target)
            )
            self.components_ = {self.source: basis_source, self.target: basis_target}
            cross = basis_source.T @ cross @ basis_target
            gram_source = basis_source.T @ gram_source @ basis_source
        rotation, singular_sum = linalg.procrustes_from_product(cross)
        self.rotation_ = rotation
        self.scale_ = np.float64(singular_sum / np.trace(gram_source) if self.scale else 1.0)

    def _map(self, a: np.ndarray) -> np.ndarray:
        return a @ self.rotation_ * self.scale_

    def _reduce(self, x: np.ndarray, modality: str) -> np.ndarray:
        if self.n_components is None:
            return x
        return x @ self.components_[modality].astype(x.dtype)  # no float64 copy of x


class CCAAligner(Aligner):
    """Regularised CCA into ``n_components`` shared dimensions.

    Each canonical direction is scaled by ``correlation ** weight_power`` (0: plain CCA;
    Gong et al. 2014 weight by a power of the correlations so that poorly correlated
    directions count less in cosine similarity).
    """

    def __init__(
        self,
        n_components: int = 128,
        reg: float = 1e-3,
        weight_power: float = 1.0,
        normalize: bool = True,
    ):
        super().__init__(normalize=normalize)
        self.n_components = n_components
        self.reg = reg
        self.weight_power = weight_power

    statistical = True

    def _solve(self, stats: Statistics) -> None:
        m_a, m_b = stats.modalities
        covariances = (stats.covariance(m_a, m_a), stats.covariance(m_b, m_b), stats.covariance(m_a, m_b))
        proj_a, proj_b, corr = linalg.cca_from_covariances(*covariances, self.n_components, reg=self.reg)
        self.mean_ = {m_a: stats.mean(m_a), m_b: stats.mean(m_b)}
        self.projection_ = {m_a: proj_a, m_b: proj_b}
        self.correlations_ = corr

    def truncated(self, n_components: int, weight_power: float) -> CCAAligner:
        """The fitted CCA of ``n_components <= self.n_components`` directions weighted by
        ``weight_power``, without refitting: CCA's leading directions do not depend on how many
        are kept (the same data gives the same first columns)."""
        self._check_fitted()
        if not 1 <= n_components <= self.n_components:
            raise ValueError(f"n_components must be in [1, {self.n_components}], got {n_components}")
        smaller = CCAAligner(n_components, self.reg, weight_power, self.normalize)
        smaller.modalities_, smaller.dims_, smaller.mean_ = self.modalities_, self.dims_, self.mean_
        smaller.projection_ = {m: p[:, :n_components] for m, p in self.projection_.items()}
        smaller.correlations_ = self.correlations_[:n_components]
        return smaller

    def affine(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with ``transform(x) = x' W + b`` for preprocessed rows ``x'``."""
        self._check_fitted()
        weights = np.clip(self.correlations_, 0.0, None) ** self.weight_power
        matrix = self.projection_[modality] * weights
        return matrix, -self.mean_[modality] @ matrix

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        matrix, offset = self.affine(modality)
        return x @ matrix + offset


class PivotAligner(Aligner):
    """Every modality mapped into the centred space of ``pivot`` by ridge regression.

    For each modality ``m`` other than ``pivot``, on the rows that have both,
    ``W_m = argmin ||(X_m - mean_m) W - (X_pivot - mean_pivot)||^2 + ridge ||W||^2``;
    ``transform(x, m) = (x - mean_m) W_m``, and the pivot's rows are only centred. Rows of
    two non-pivot modalities are never needed together, so their comparison is zero-shot.
    """

    n_modalities = None
    partial_rows = True

    def __init__(self, pivot: str = "image", ridge: float = 1.0, min_pairs: int = 10, normalize: bool = True):
        super().__init__(normalize=normalize)
        self.pivot = pivot
        self.ridge = ridge
        self.min_pairs = min_pairs

    def _fit_partial(self, data: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
        if self.pivot not in data or not present[self.pivot].any():
            raise ValueError(f"PivotAligner(pivot={self.pivot!r}): no {self.pivot} rows among {list(data)}")
        self.mean_ = {m: x[present[m]].mean(axis=0, dtype=np.float64) for m, x in data.items()}
        self.coef_ = {}
        for m, x in data.items():
            if m == self.pivot:
                continue
            rows = present[m] & present[self.pivot]
            if rows.sum() < max(self.min_pairs, 1):
                raise ValueError(
                    f"PivotAligner: {m} shares {int(rows.sum())} rows with the pivot {self.pivot}, "
                    f"fewer than min_pairs={self.min_pairs}"
                )
            target = data[self.pivot][rows] - self.mean_[self.pivot].astype(np.float32)
            self.coef_[m] = linalg.least_squares(x[rows] - self.mean_[m].astype(np.float32), target, ridge=self.ridge)

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        centred = x - self.mean_[modality].astype(np.float32)
        return centred if modality == self.pivot else centred @ self.coef_[modality]
