"""How well two spaces can be aligned, measured on a small sample of pairs before encoding
everything: representational similarity (CKA, mutual kNN, CKNNA; Huh et al. 2024) and a
cross-validated closed-form fit.

Every function takes row-paired ``x`` (n, d_x) and ``y`` (n, d_y): row ``i`` of both is one
item. Similarities are cosines (rows are L2-normalised here); a row's neighbours exclude itself.
"""

from __future__ import annotations

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.analysis.geometry import linear_cka
from xmodal.core.arrays import check_embeddings, check_int, unit_rows
from xmodal.evaluate import evaluate_bidirectional


def _paired(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_embeddings(x, "x"), check_embeddings(y, "y")
    if len(x) != len(y):
        raise ValueError(f"alignability needs row-paired inputs, got {len(x)} and {len(y)} rows")
    if not 1 <= check_int(k, "k", minimum=1) < len(x):
        raise ValueError(f"k must be below the number of rows {len(x)}, got {k}")
    return unit_rows(x.astype(np.float64)), unit_rows(y.astype(np.float64))


def _neighbours(kernel: np.ndarray, k: int) -> np.ndarray:
    """Boolean (n, n): ``j`` is among the ``k`` most similar rows to ``i`` (``i`` excluded)."""
    scores = kernel.copy()
    np.fill_diagonal(scores, -np.inf)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    mask = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest neighbours that are the same in both spaces
    (0: none shared; 1: identical neighbourhoods)."""
    x, y = _paired(x, y, k)
    both = _neighbours(x @ x.T, k) & _neighbours(y @ y.T, k)
    return float(both.sum() / (len(x) * k))


def cknna(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Centered kernel nearest-neighbour alignment (Huh et al. 2024): CKA of the cosine kernels
    restricted to the pairs ``(i, j)`` that are ``k``-nearest neighbours in both spaces,
    ``HSIC(K_m, L_m) / sqrt(HSIC(K_m', K_m') HSIC(L_m'', L_m''))`` with biased HSIC and each
    kernel masked by the mutual neighbours of its own pair of spaces."""
    x, y = _paired(x, y, k)
    kernels = {"x": x @ x.T, "y": y @ y.T}
    near = {name: _neighbours(kernel, k) for name, kernel in kernels.items()}

    def hsic(a: str, b: str) -> float:
        mask = near[a] & near[b]
        ka, kb = kernels[a] * mask, kernels[b] * mask
        ka = ka - ka.mean(axis=0) - ka.mean(axis=1, keepdims=True) + ka.mean()  # H K H
        return float((ka * kb).sum())

    denominator = np.sqrt(max(hsic("x", "x"), 0.0) * max(hsic("y", "y"), 0.0))
    return float(hsic("x", "y") / denominator) if denominator > 0 else 0.0


def fitted_recall(
    x: np.ndarray, y: np.ndarray, *, aligner: str = "procrustes-t2i", folds: int = 5, seed: int = 0
) -> float:
    """Mean R@10 (both directions, plain cosine) of ``aligner`` fitted on ``folds - 1`` folds of
    the items and scored on the remaining one, averaged over the folds (seeded split)."""
    x, y = check_embeddings(x, "x"), check_embeddings(y, "y")
    folds = check_int(folds, "folds", minimum=2)
    if len(x) != len(y) or len(x) < 10 * folds:
        raise ValueError(f"a {folds}-fold fit needs row-paired inputs of at least {10 * folds} rows")
    fold = np.random.default_rng(seed).permutation(len(x)) % folds
    recalls = []
    for f in range(folds):
        train, test = fold != f, fold == f
        fitted = make_aligner(aligner).fit({"text": x[train], "image": y[train]})
        items = np.arange(int(test.sum()))
        metrics = evaluate_bidirectional(
            fitted.transform(x[test], "text"), fitted.transform(y[test], "image"), items, items
        )
        recalls.append((metrics["t2i/R@10"] + metrics["i2t/R@10"]) / 2)
    return float(np.mean(recalls))


SCORES = ("fitted R@10", "CKA", "mutual kNN", "CKNNA")


def alignability(x: np.ndarray, y: np.ndarray, *, k: int = 10, seed: int = 0) -> dict[str, float]:
    """Every measure of :data:`SCORES` for one pair of spaces (higher is more alignable)."""
    return {
        "fitted R@10": fitted_recall(x, y, seed=seed),
        "CKA": linear_cka(x, y),
        "mutual kNN": mutual_knn(x, y, k),
        "CKNNA": cknna(x, y, k),
    }
