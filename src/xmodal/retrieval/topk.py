"""Exact top-k retrieval in a shared space, from any chunked score matrix, or streamed over
gallery rows that arrive in blocks (a gallery out of core)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from xmodal.core.arrays import check_embeddings, check_int
from xmodal.core.config import DEFAULT_METRIC
from xmodal.retrieval.fusion import fused_scorer
from xmodal.retrieval.similarity import Scores, default_chunk_size


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


def stream_topk(
    queries: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]], k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` against gallery rows that arrive in blocks:
    ``(scores float32, ids int64)``, ``(n_queries, k)``, ordered as :func:`topk` (descending
    score, the lower row id first among equal scores, and winning a tie at the cut-off).

    ``blocks`` yields ``(first_row, block)`` pairs (as :meth:`xmodal.store.Shards.batches`): a
    block's rows have ids ``first_row ..``. Each block is scored (about 64 MB of scores at a
    time) and cut to its top ``k`` before the next is read, so memory holds one block and
    ``n_queries x 2k`` candidates, whatever the gallery size. Pass unit rows for cosine. ``k``
    must be in ``1..rows seen``.
    """
    queries = check_embeddings(queries, "queries")
    k = check_int(k, "k", minimum=1)
    n_queries, dim = queries.shape
    best = np.empty((n_queries, 0), np.float32), np.empty((n_queries, 0), np.int64)
    seen = 0
    for first, block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != dim:
            raise ValueError(f"the block of rows from {first} has shape {block.shape}; the queries are {dim}-d")
        if not len(block):
            continue
        seen += len(block)
        width = min(k, len(block))
        scores, ids = np.empty((n_queries, width), np.float32), np.empty((n_queries, width), np.int64)
        step = default_chunk_size(len(block))
        for lo in range(0, n_queries, step):
            scores[lo : lo + step], ids[lo : lo + step] = _row_topk(queries[lo : lo + step] @ block.T, k)
        ids += first
        best = _merge_topk(best, (scores, ids), k)
    if seen < k:
        raise ValueError(f"k must be between 1 and the gallery size {seen}, got {k}")
    return best


def _row_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, columns)`` best ``(scores, columns)`` of each row, unordered; among equal
    scores at the cut-off the lower columns are kept."""
    width = scores.shape[1]
    if k >= width:
        return scores, np.broadcast_to(np.arange(width, dtype=np.int64), scores.shape)
    cols = np.argpartition(scores, width - k, axis=1)[:, width - k :]
    vals = np.take_along_axis(scores, cols, axis=1)
    kth = vals.min(axis=1)
    for row in np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k):  # equal scores across the cut
        above = np.flatnonzero(scores[row] > kth[row])
        at = np.flatnonzero(scores[row] == kth[row])[: k - len(above)]
        cols[row] = np.concatenate([above, at])
        vals[row] = scores[row, cols[row]]
    return vals, cols


def _merge_topk(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of two candidate sets ``(scores, ids)`` per row, by descending score then id."""
    scores, ids = np.concatenate([a[0], b[0]], axis=1), np.concatenate([a[1], b[1]], axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
