"""Similarity scores between query and gallery embeddings, computed lazily in row chunks.

The fixed similarities (higher = more similar), for a query ``x`` and a gallery item ``y``:

* ``cosine``: ``x.y / (|x| |y|)`` (all-zero rows score 0);
* ``dot``: ``x.y``;
* ``euclidean``: ``-|x - y|_2``;
* ``manhattan``: ``-|x - y|_1``.

A :class:`Scorer` never materialises the full ``n_queries x n_gallery`` score matrix: it
yields blocks of query rows scored against the whole gallery, sized to about 64 MB of
float32 each, so 100k x 100k evaluations run in bounded memory. Learned similarities live
in :mod:`xmodal.retrieval.learned`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from xmodal.core.arrays import check_embeddings, check_int, unit_rows
from xmodal.core.config import DEFAULT_METRIC
from xmodal.core.csls import column_top_k_mean, csls, top_k_mean

SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")

_CHUNK_BYTES = 64 * 2**20


class Scores(Protocol):
    """A score matrix read in blocks of query rows: :class:`Scorer`, a fused or a learned
    scorer (what :func:`xmodal.retrieval.topk` and :func:`xmodal.evaluate.ranks` consume)."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]: ...


def default_chunk_size(n_gallery: int) -> int:
    """Number of query rows whose float32 scores against ``n_gallery`` items fill ~64 MB (>= 1)."""
    return max(1, _CHUNK_BYTES // (4 * max(1, n_gallery)))


def pairwise(queries: np.ndarray, gallery: np.ndarray, metric: str = DEFAULT_METRIC) -> np.ndarray:
    """Dense float32 ``(n_queries, n_gallery)`` similarity matrix; for small inputs only."""
    metric = check_metric(metric)
    q, g = _check_pair(queries, gallery)
    return similarity_block(prepare_rows(q, metric), prepare_rows(g, metric), metric)


def similarity_block(queries: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    """Float32 scores of prepared rows (unit rows for cosine) under ``metric``; no checks."""
    if metric in ("cosine", "dot"):
        return queries @ gallery.T
    if metric == "euclidean":
        squared = (queries * queries).sum(1)[:, None] + (gallery * gallery).sum(1)[None, :]
        squared -= 2 * (queries @ gallery.T)
        return -np.sqrt(np.maximum(squared, 0, out=squared), out=squared)
    from scipy.spatial.distance import cdist  # only here: importing scipy.spatial is slow

    return -cdist(queries, gallery, "cityblock").astype(np.float32)


class Scorer:
    """Lazy score matrix between ``queries`` (rows) and ``gallery`` (columns).

    ``metric`` is one of :data:`SIMILARITIES` (see the module docstring). With ``csls_k > 0``
    the scores are CSLS (:mod:`xmodal.core.csls`): ``r_gallery(x)`` over the query's
    ``csls_k`` nearest gallery items, ``r_reference(y)`` over the gallery item's ``csls_k``
    nearest rows of ``reference`` (default: the queries given here, so a query's CSLS scores
    depend on the other queries passed alongside it). ``csls_k`` is clipped to the gallery
    size and to the reference size. CSLS needs one extra pass over the scores, done on the
    first call to :meth:`chunks` and cached.
    """

    def __init__(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        metric: str = DEFAULT_METRIC,
        csls_k: int = 0,
        chunk_size: int | None = None,
        reference: np.ndarray | None = None,
    ) -> None:
        self.metric = check_metric(metric)
        q, g = _check_pair(queries, gallery)
        self.csls_k = check_int(csls_k, "csls_k", minimum=0)
        self.chunk_size = (
            default_chunk_size(g.shape[0]) if chunk_size is None else check_int(chunk_size, "chunk_size", minimum=1)
        )
        self._queries = prepare_rows(q, self.metric)
        self._gallery = prepare_rows(g, self.metric)
        self._reference = None if reference is None else _check_rows(reference, g.shape[1], "reference")
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
        r_gallery, r_reference = self._csls()
        for rows, s in self._raw_chunks():
            yield rows, csls(s, r_gallery[rows], r_reference)

    def _raw_chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        n_queries = self.shape[0]
        for start in range(0, n_queries, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n_queries))
            yield rows, similarity_block(self._queries[rows], self._gallery, self.metric)

    def _csls(self) -> tuple[np.ndarray, np.ndarray]:
        """``(r_gallery per query, r_reference per gallery item)``, computed once."""
        if self._csls_stats is None:
            r_gallery = np.empty(self.shape[0], dtype=np.float32)

            def blocks() -> Iterator[np.ndarray]:
                for rows, s in self._raw_chunks():
                    r_gallery[rows] = top_k_mean(s, self.csls_k)
                    yield s

            if self._reference is None:  # one pass over the scores gives both
                r_reference = column_top_k_mean(blocks(), min(self.csls_k, self.shape[0]))
            else:
                for _ in blocks():  # fills r_gallery
                    pass
                r_reference = reference_means(self._reference, self._gallery, self.csls_k, self.metric, self.chunk_size)
            self._csls_stats = r_gallery, r_reference
        return self._csls_stats


def reference_means(
    reference: np.ndarray, gallery: np.ndarray, k: int, metric: str = DEFAULT_METRIC, chunk_size: int | None = None
) -> np.ndarray:
    """CSLS's ``r_reference``: each gallery row's mean score to its ``k`` nearest ``reference``
    rows (``k`` clipped to their number), in chunks."""
    scores = Scorer(reference, gallery, metric, chunk_size=chunk_size)
    return column_top_k_mean((s for _, s in scores.chunks()), min(k, scores.shape[0]))


def check_metric(metric: str) -> str:
    if metric not in SIMILARITIES:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(SIMILARITIES)}")
    return metric


def _check_pair(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = check_embeddings(queries, "queries")
    g = check_embeddings(gallery, "gallery")
    _check_dim(q, g.shape[1], "queries")
    return q, g


def _check_rows(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``x`` checked as embeddings named ``what`` of the gallery's dimension ``dim``."""
    rows = check_embeddings(x, what)
    _check_dim(rows, dim, what)
    return rows


def _check_dim(rows: np.ndarray, dim: int, what: str) -> None:
    if rows.shape[1] != dim:
        raise ValueError(f"{what} have dimension {rows.shape[1]} but the gallery has {dim}")


def prepare_rows(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows L2-normalised for cosine (zero rows stay zero), unchanged otherwise."""
    return unit_rows(x) if metric == "cosine" else x
