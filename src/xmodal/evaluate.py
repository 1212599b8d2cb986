"""Retrieval and classification metrics.

Protocol (CLIP_benchmark convention):

* Gallery item ``j`` is relevant to query ``i`` iff ``query_labels[i] == gallery_labels[j]``
  (e.g. the image id of each caption and of each image; with 5 captions per image an image
  query has 5 relevant captions).
* The rank of a query is the rank of its best-ranked relevant gallery item. Ties are counted
  pessimistically: ``rank = 1 + #{non-relevant j : score[i, j] >= best relevant score}``,
  so constant scores never look good.
* ``R@K`` is the percentage (0..100) of queries with ``rank <= K``; ``medR`` and ``meanR``
  are the median and mean rank.

Scores are consumed in row chunks of queries, so no dense score matrix is ever built.
Classification (:func:`classification_report`) scores queries against a few classes instead
of a gallery; its protocol is in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xmodal.core.arrays import check_embeddings, check_int
from xmodal.core.config import DEFAULT_METRIC
from xmodal.core.csls import csls
from xmodal.retrieval.fusion import fused_scorer
from xmodal.retrieval.rerank import Rerank, Reranked
from xmodal.retrieval.similarity import Scores, check_metric, default_chunk_size, prepare_rows, similarity_block

Blocks = Callable[[], Iterable[np.ndarray]]  # yields the rows in consecutive blocks, from the first, on every call


class _DenseScores:
    """Adapter giving a dense score matrix the ``shape`` / ``chunks()`` interface of Scorer."""

    def __init__(self, scores: np.ndarray) -> None:
        scores = np.asarray(scores)
        if scores.ndim != 2:
            raise ValueError(f"scores must be a 2-D array, got shape {scores.shape}")
        self._scores = scores
        self.shape: tuple[int, int] = scores.shape
        self._chunk_size = default_chunk_size(scores.shape[1])

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for start in range(0, self.shape[0], self._chunk_size):
            rows = slice(start, min(start + self._chunk_size, self.shape[0]))
            yield rows, self._scores[rows]


def ranks(scorer: Scores | np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """1-based int64 rank of each query's best relevant gallery item (pessimistic on ties).

    ``scorer`` is a dense score matrix or any lazy one with ``shape`` and ``chunks()``
    (:class:`~xmodal.retrieval.Scorer`, a fused or a learned scorer).
    """
    source: Scores = scorer if hasattr(scorer, "chunks") else _DenseScores(np.asarray(scorer))
    n_queries, n_gallery = source.shape
    q_labels = _check_labels(query_labels, "query_labels", n_queries, "queries")
    g_labels = _check_labels(gallery_labels, "gallery_labels", n_gallery, "gallery items")
    _check_relevant(q_labels, g_labels)
    out = np.empty(n_queries, dtype=np.int64)
    for rows, s in source.chunks():
        _refuse_nan(s, rows.start)
        relevant = q_labels[rows, None] == g_labels[None, :]
        best = np.where(relevant, s, -np.inf).max(axis=1, keepdims=True)
        out[rows] = 1 + ((s >= best) & ~relevant).sum(axis=1)
    return out


def streamed_ranks(
    queries: Blocks,
    gallery: Blocks,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
) -> np.ndarray:
    """:func:`ranks` of ``Scorer(queries, gallery, metric, csls_k)`` with both sides out of core:
    ``queries()`` and ``gallery()`` yield their rows block by block (e.g. shards mapped into the
    shared space), read again for each pass. Memory is one block of scores, plus ``csls_k``
    values per query and per gallery item for CSLS (whose neighbourhoods are, as in
    :class:`~xmodal.retrieval.Scorer`, the gallery for a query and the queries for a gallery item)."""
    q_labels = np.asarray(query_labels)
    g_labels = np.asarray(gallery_labels)
    csls_k = check_int(csls_k, "csls_k", minimum=0)
    metric = check_metric(metric)
    _check_relevant(q_labels, g_labels)

    def blocks() -> Iterator[tuple[slice, slice, np.ndarray]]:
        """``(query rows, gallery columns, raw scores)`` over every pair of blocks."""
        q_start = 0
        for q in queries():
            q = prepare_rows(q, metric)
            g_start = 0
            for g in gallery():
                g = prepare_rows(g, metric)
                yield slice(q_start, q_start + len(q)), slice(g_start, g_start + len(g)), similarity_block(q, g, metric)
                g_start += len(g)
            if g_start != len(g_labels):
                raise ValueError(f"the gallery yields {g_start} rows for {len(g_labels)} labels")
            q_start += len(q)
        if q_start != len(q_labels):
            raise ValueError(f"the queries yield {q_start} rows for {len(q_labels)} labels")

    adjust = _streamed_csls(blocks, len(q_labels), len(g_labels), csls_k) if csls_k else None

    def scored() -> Iterator[tuple[slice, slice, np.ndarray, np.ndarray]]:
        for rows, cols, s in blocks():
            _refuse_nan(s, rows.start)
            s = csls(s, adjust[0][rows], adjust[1][cols]) if adjust is not None else s
            yield rows, cols, s, q_labels[rows, None] == g_labels[None, cols]

    best = np.full(len(q_labels), -np.inf, dtype=np.float32)
    for rows, _, s, relevant in scored():
        best[rows] = np.maximum(best[rows], np.where(relevant, s, -np.inf).max(axis=1))
    out = np.ones(len(q_labels), dtype=np.int64)
    for rows, _, s, relevant in scored():
        out[rows] += ((s >= best[rows, None]) & ~relevant).sum(axis=1)
    return out


def _streamed_csls(
    blocks: Callable[[], Iterator[tuple[slice, slice, np.ndarray]]], n_queries: int, n_gallery: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(r_gallery per query, r_reference per gallery item)``: the mean of the ``k`` largest
    scores of each query row and of each gallery column, kept block by block."""
    k_row, k_col = min(k, n_gallery), min(k, n_queries)
    rows_top = np.full((n_queries, k_row), -np.inf, dtype=np.float32)
    cols_top = np.full((k_col, n_gallery), -np.inf, dtype=np.float32)
    for rows, cols, s in blocks():
        both = np.concatenate([rows_top[rows], s], axis=1)
        rows_top[rows] = np.partition(both, both.shape[1] - k_row, axis=1)[:, -k_row:]
        both = np.concatenate([cols_top[:, cols], s], axis=0)
        cols_top[:, cols] = np.partition(both, both.shape[0] - k_col, axis=0)[-k_col:]
    return np.sort(rows_top, axis=1).mean(axis=1), np.sort(cols_top, axis=0).mean(axis=0)


def _check_relevant(q_labels: np.ndarray, g_labels: np.ndarray) -> None:
    """Refuse queries with no relevant gallery item (their rank would be undefined)."""
    orphan = ~np.isin(q_labels, g_labels)
    if orphan.any():
        raise ValueError(
            f"{int(orphan.sum())} queries have no relevant gallery item (first: query {int(np.argmax(orphan))})"
        )


def _refuse_nan(scores: np.ndarray, first_row: int) -> None:
    """Refuse a block of scores holding NaN (query rows numbered from ``first_row``)."""
    if np.isnan(scores).any():
        raise ValueError(
            f"scores contain NaN (first: query {first_row + int(np.argmax(np.isnan(scores).any(axis=1)))})"
        )


def recall_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"R@K": % of ranks <= K for K in ks, "medR": median rank, "meanR": mean rank}``."""
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    if r.min() < 1:
        raise ValueError(f"ranks are 1-based, got minimum {r.min()}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r}")
    metrics = {f"R@{k}": 100.0 * int(np.count_nonzero(r <= k)) / r.size for k in ks}
    metrics["medR"] = float(np.median(r))
    metrics["meanR"] = float(np.mean(r))
    return metrics


def evaluate_retrieval(
    queries: np.ndarray | Sequence[np.ndarray],
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
    ks: Sequence[int] = (1, 5, 10),
    prefix: str = "",
    fusion: str = "mean",
    reference: np.ndarray | None = None,
    rerank: Rerank | None = None,
) -> dict[str, float]:
    """Recall metrics of ``queries`` retrieving from ``gallery``, keys prefixed by ``prefix``.

    ``queries`` may be a list of row-paired arrays (one per query modality), fused as
    ``fusion`` says (see :mod:`xmodal.retrieval.fusion`). ``reference``: CSLS's reference
    queries (default: ``queries`` themselves, see :class:`~xmodal.retrieval.Scorer`).
    ``rerank`` (fitted for ``gallery``, see :mod:`xmodal.retrieval.rerank`) re-ranks the scores
    (CSLS scores if ``csls_k``), receiving ``queries`` alongside; it needs one query array.
    """
    scorer: Scores = fused_scorer(queries, gallery, fusion=fusion, metric=metric, csls_k=csls_k, reference=reference)
    if rerank is not None:
        if not isinstance(queries, np.ndarray):
            raise ValueError("rerank needs the queries as one array (fuse the query modalities first)")
        scorer = Reranked(scorer, queries, rerank)
    metrics = recall_metrics(ranks(scorer, query_labels, gallery_labels), ks)
    return {prefix + name: value for name, value in metrics.items()}


def evaluate_bidirectional(
    text: np.ndarray,
    image: np.ndarray,
    text_labels: np.ndarray,
    image_labels: np.ndarray,
    *,
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
    ks: Sequence[int] = (1, 5, 10),
    rerank: Mapping[str, Rerank] | None = None,
) -> dict[str, float]:
    """Text->image metrics under ``"t2i/"`` and image->text metrics under ``"i2t/"``; ``rerank``
    maps a direction (``"t2i"``, ``"i2t"``) to the rerank of that direction (fitted for its
    gallery, see :func:`evaluate_retrieval`); a direction it does not name is not re-ranked."""
    reranks = dict(rerank or {})
    if unknown := set(reranks) - {"t2i", "i2t"}:
        raise ValueError(f"rerank directions are 't2i' and 'i2t', got {sorted(unknown)}")
    directions = {"t2i": (text, image, text_labels, image_labels), "i2t": (image, text, image_labels, text_labels)}
    metrics: dict[str, float] = {}
    for name, (queries, gallery, q_labels, g_labels) in directions.items():
        metrics |= evaluate_retrieval(
            queries, gallery, q_labels, g_labels, prefix=f"{name}/", metric=metric, csls_k=csls_k, ks=ks,
            rerank=reranks.get(name),
        )  # fmt: skip
    return metrics


@dataclass(frozen=True)
class ClassificationReport:
    """What :func:`classification_report` measured: ``metrics`` (percentages, 0..100) and
    ``confusion[true class, predicted class]`` (query counts, int64)."""

    metrics: dict[str, float]
    confusion: np.ndarray

    @property
    def support(self) -> np.ndarray:
        """Number of queries of each class."""
        return self.confusion.sum(axis=1)

    @property
    def class_top1(self) -> np.ndarray:
        """Top-1 accuracy (%) of each class's queries (its recall); NaN for a class without queries."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * np.diag(self.confusion) / self.support


def classification_report(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> ClassificationReport:
    """Accuracy of class ``scores`` (``n_queries x n_classes``, higher = more likely) against
    the true class index of each query (``targets``), with the baselines it must beat.

    - The rank of a query is that of its true class, pessimistic on ties as for retrieval:
      ``1 + #{other classes c : scores[i, c] >= scores[i, targets[i]]}``.
    - ``"topK"``: % of queries ranked ``<= K``, for K in ``ks``; ``"balanced top1"``: the mean
      over the classes that have queries of their top-1 accuracy.
    - ``"majority topK"``: % of queries in the K most frequent classes of these queries: the
      best a constant prediction of K classes achieves here (``"majority top1"`` is the
      majority-class rate); ``"chance topK"``: ``100 min(K, n_classes) / n_classes``, a
      uniform random guess.
    - The predicted class (the ``confusion`` columns) is the true class when ranked first,
      else the best-scoring other class, so the diagonal holds exactly the top-1 hits.
    """
    s = check_embeddings(scores, "scores")
    n_queries, n_classes = s.shape
    t = _check_labels(targets, "targets", n_queries, "queries")
    if t.min() < 0 or t.max() >= n_classes:
        raise ValueError(f"targets must be class indices in 0..{n_classes - 1}, got {t.min()}..{t.max()}")
    for k in ks:
        check_int(k, "ks", minimum=1)
    rows = np.arange(n_queries)
    true = s[rows, t]
    others = s.copy()
    others[rows, t] = -np.inf
    rank = 1 + (others >= true[:, None]).sum(axis=1)
    predicted = np.where(rank == 1, t, others.argmax(axis=1))
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (t, predicted), 1)
    support = np.bincount(t, minlength=n_classes)
    present = support > 0
    largest = np.sort(support)[::-1]
    metrics = {f"top{k}": 100.0 * int(np.count_nonzero(rank <= k)) / n_queries for k in ks}
    metrics["balanced top1"] = 100.0 * float(np.mean(np.diag(confusion)[present] / support[present]))
    for k in ks:
        metrics[f"majority top{k}"] = 100.0 * int(largest[:k].sum()) / n_queries
        metrics[f"chance top{k}"] = 100.0 * min(k, n_classes) / n_classes
    return ClassificationReport(metrics, confusion)


def _check_labels(labels: np.ndarray, name: str, expected: int, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.shape[0] != expected:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {expected} {what}")
    return arr


def chance_recall(query_labels: np.ndarray, gallery_labels: np.ndarray, k: int) -> float:
    """Expected R@``k`` (%) of a uniformly random ranking of the gallery: the mean over queries
    of ``1 - C(n - r, k) / C(n, k)``, for a gallery of ``n`` rows of which ``r`` are relevant
    (share the query's label)."""
    q_labels = np.asarray(query_labels)
    g_labels = np.asarray(gallery_labels)
    if q_labels.ndim != 1 or g_labels.ndim != 1 or not len(q_labels) or not len(g_labels):
        raise ValueError(f"labels must be non-empty 1-D arrays, got shapes {q_labels.shape} and {g_labels.shape}")
    k = check_int(k, "k", minimum=1)
    values, counts = np.unique(g_labels, return_counts=True)
    slot = np.minimum(np.searchsorted(values, q_labels), len(values) - 1)
    relevant = np.where(values[slot] == q_labels, counts[slot], 0)
    n = len(g_labels)
    missed = np.ones(len(q_labels))
    for i in range(min(k, n)):  # P(no relevant row among the first k) = prod (n - r - i) / (n - i)
        missed *= np.clip(n - relevant - i, 0, None) / (n - i)
    return float(100.0 * np.mean(1.0 - missed))
