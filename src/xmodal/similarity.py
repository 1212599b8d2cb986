"""Similarity scores between query and gallery embeddings, computed lazily in row chunks.

The fixed similarities (higher = more similar), for a query ``x`` and a gallery item ``y``:

* ``cosine``: ``x.y / (|x| |y|)`` (all-zero rows score 0);
* ``dot``: ``x.y``;
* ``euclidean``: ``-|x - y|_2``;
* ``manhattan``: ``-|x - y|_1``.

A :class:`Scorer` never materialises the full ``n_queries x n_gallery`` score matrix: it
yields blocks of query rows scored against the whole gallery, sized to about 64 MB of
float32 each, so 100k x 100k evaluations run in bounded memory. Learned similarities live
in :mod:`xmodal.learned_similarity`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.spatial.distance import cdist

SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")

_CHUNK_BYTES = 64 * 2**20


def check_embeddings(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a non-empty 2-D array of finite real numbers; return it as C-contiguous float32.

    Values outside the float32 range count as inf. Raises ``ValueError`` naming ``name``.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        n_bad = int(bad.sum())
        rows = "row" if n_bad == 1 else "rows"
        raise ValueError(
            f"{name} contain NaN or inf in {n_bad} {rows} (first: row {int(np.argmax(bad))})"
        )
    return arr


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (norms below 1e-12 count as 1e-12, so zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def default_chunk_size(n_gallery: int) -> int:
    """Number of query rows whose float32 scores against ``n_gallery`` items fill ~64 MB (>= 1)."""
    return max(1, _CHUNK_BYTES // (4 * max(1, n_gallery)))


def pairwise(queries: np.ndarray, gallery: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Dense float32 ``(n_queries, n_gallery)`` similarity matrix; for small inputs only."""
    metric = _check_metric(metric)
    q, g = _check_pair(queries, gallery)
    return similarity_block(_prepare(q, metric), _prepare(g, metric), metric)


def similarity_block(queries: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    """Float32 scores of prepared rows (unit rows for cosine) under ``metric``; no checks."""
    if metric in ("cosine", "dot"):
        return queries @ gallery.T
    if metric == "euclidean":
        squared = (queries * queries).sum(1)[:, None] + (gallery * gallery).sum(1)[None, :]
        squared -= 2 * (queries @ gallery.T)
        return -np.sqrt(np.maximum(squared, 0, out=squared), out=squared)
    return -cdist(queries, gallery, "cityblock").astype(np.float32)


class Scorer:
    """Lazy score matrix between ``queries`` (rows) and ``gallery`` (columns).

    ``metric`` is one of :data:`SIMILARITIES` (see the module docstring). With ``csls_k > 0`` the scores are CSLS (Lample et al. 2018, "Word
    translation without parallel data")::

        csls(x, y) = 2 s(x, y) - r_g(x) - r_q(y)

    where ``r_g(x)`` is the mean similarity of query ``x`` to its ``csls_k`` nearest gallery
    items and ``r_q(y)`` the mean similarity of gallery item ``y`` to its ``csls_k`` nearest
    queries. The reference set for ``r_q`` is the query set given here, so a query's CSLS
    scores depend on the other queries passed alongside it. ``csls_k`` is clipped to the
    gallery size for ``r_g`` and to the query count for ``r_q``. CSLS needs one extra pass
    over the scores, done on the first call to :meth:`chunks` and cached.
    """

    def __init__(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        metric: str = "cosine",
        csls_k: int = 0,
        chunk_size: int | None = None,
    ) -> None:
        self.metric = _check_metric(metric)
        q, g = _check_pair(queries, gallery)
        self.csls_k = check_int(csls_k, "csls_k", minimum=0)
        self.chunk_size = (
            default_chunk_size(g.shape[0])
            if chunk_size is None
            else check_int(chunk_size, "chunk_size", minimum=1)
        )
        self._queries = _prepare(q, self.metric)
        self._gallery = _prepare(g, self.metric)
        self._csls_stats: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_queries, n_gallery)``."""
        return self._queries.shape[0], self._gallery.shape[0]

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, scores)``: float32 scores of query rows ``rows`` against the gallery."""
        if not self.csls_k:
            yield from self._raw_chunks()
            return
        r_g, r_q = self._csls()
        for rows, s in self._raw_chunks():
            s *= 2
            s -= r_g[rows, None]
            s -= r_q[None, :]
            yield rows, s

    def _raw_chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        n_queries = self.shape[0]
        for start in range(0, n_queries, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n_queries))
            yield rows, similarity_block(self._queries[rows], self._gallery, self.metric)

    def _csls(self) -> tuple[np.ndarray, np.ndarray]:
        """``(r_g, r_q)``; one chunked pass, running top-k per column."""
        if self._csls_stats is None:
            n_queries, n_gallery = self.shape
            k_gallery = min(self.csls_k, n_gallery)
            k_queries = min(self.csls_k, n_queries)
            cut = n_gallery - k_gallery
            r_g = np.empty(n_queries, dtype=np.float32)
            top = np.empty((0, n_gallery), dtype=np.float32)  # best k_queries scores per column
            for rows, s in self._raw_chunks():
                r_g[rows] = np.partition(s, cut, axis=1)[:, cut:].mean(axis=1)
                top = np.concatenate([top, s])
                if top.shape[0] > k_queries:
                    top = np.partition(top, top.shape[0] - k_queries, axis=0)[-k_queries:]
            self._csls_stats = r_g, top.mean(axis=0)
        return self._csls_stats


def _check_metric(metric: str) -> str:
    if metric not in SIMILARITIES:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(SIMILARITIES)}")
    return metric


def _check_pair(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = check_embeddings(queries, "queries")
    g = check_embeddings(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}"
        )
    return q, g


def check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows L2-normalised for cosine (zero rows stay zero), unchanged otherwise."""
    if metric != "cosine":
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
