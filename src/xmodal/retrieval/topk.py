"""Exact top-k retrieval in a shared space, from any chunked score matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.core.arrays import check_int
from xmodal.core.config import DEFAULT_METRIC
from xmodal.retrieval.fusion import fused_scorer
from xmodal.retrieval.similarity import Scores


def search(
    queries: np.ndarray | Sequence[np.ndarray],
    gallery: np.ndarray,
    k: int = 10,
    *,
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
    fusion: str = "mean",
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` search: ``(scores, indices)`` as :func:`topk`. ``queries`` is one array,
    or a list of row-paired arrays (one per query modality) fused by ``fusion`` (``"mean"`` or
    ``"score"``, see :mod:`xmodal.retrieval.fusion`); ``reference`` as in :class:`Scorer`."""
    return topk(fused_scorer(queries, gallery, fusion=fusion, metric=metric, csls_k=csls_k, reference=reference), k)


def topk(scorer: Scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` gallery items per query: ``(scores float32, indices int64)``, ``(n_queries, k)``.

    Rows are sorted by descending score; equal scores are ordered by ascending gallery index
    (and the lower index wins a tie at the cut-off). ``k`` must be in ``1..n_gallery``.
    """
    n_queries, n_gallery = scorer.shape
    k = check_int(k, "k", minimum=1)
    if k > n_gallery:
        raise ValueError(f"k must be between 1 and the gallery size {n_gallery}, got {k}")
    indices = np.empty((n_queries, k), dtype=np.int64)
    scores = np.empty((n_queries, k), dtype=np.float32)
    for rows, s in scorer.chunks():
        kth = np.partition(s, n_gallery - k, axis=1)[:, n_gallery - k, None]  # k-th largest
        above = s > kth
        at = s == kth
        n_needed = k - above.sum(axis=1, keepdims=True)
        keep = above | (at & (np.cumsum(at, axis=1, dtype=np.int32) <= n_needed))
        cols = np.nonzero(keep)[1].reshape(-1, k)  # ascending gallery index within each row
        vals = np.take_along_axis(s, cols, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(cols, order, axis=1)
        scores[rows] = np.take_along_axis(vals, order, axis=1)
    return scores, indices
