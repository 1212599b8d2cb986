"""Queries that carry several modalities (say an English and a German caption of one image).

Two ways to fuse the per-modality query embeddings, already in a shared space:

- ``"mean"``: the mean of their L2-normalised embeddings (renormalised by cosine scoring),
  one query vector scored as usual;
- ``"score"``: the sum of the per-modality score matrices (each cosine, or CSLS).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from xmodal.core.arrays import check_embeddings, unit_rows
from xmodal.core.config import DEFAULT_METRIC, FUSIONS
from xmodal.retrieval.similarity import Scorer


def check_fusion(fusion: str) -> str:
    """``fusion`` if it names a fusion, else a ``ValueError`` listing them."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    return fusion


def fuse_mean(queries: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise mean of the L2-normalised ``queries`` (each ``n x d``); float32 ``n x d``."""
    return _mean_of_units(_check_parts(queries))


def _mean_of_units(parts: list[np.ndarray]) -> np.ndarray:
    return np.asarray(np.mean([unit_rows(x) for x in parts], axis=0, dtype=np.float32))


class SumScorer:
    """Lazy sum of several :class:`Scorer` over the same gallery (same ``shape`` and chunks)."""

    def __init__(self, scorers: Sequence[Scorer]):
        if not scorers:
            raise ValueError("SumScorer needs at least one scorer")
        shapes = {s.shape for s in scorers}
        if len(shapes) != 1:
            raise ValueError(f"scorers to sum must have one shape, got {sorted(shapes)}")
        chunk_size = min(s.chunk_size for s in scorers)
        for s in scorers:
            s.chunk_size = chunk_size
        self.scorers = list(scorers)
        self.shape = scorers[0].shape

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for parts in zip(*(s.chunks() for s in self.scorers)):
            rows = parts[0][0]
            yield rows, np.asarray(np.sum([p[1] for p in parts], axis=0, dtype=np.float32))


def fused_scorer(
    queries: np.ndarray | Sequence[np.ndarray],
    gallery: np.ndarray,
    *,
    fusion: str = "mean",
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
    reference: np.ndarray | None = None,
) -> Scorer | SumScorer:
    """A scorer for plain (one array) or multi-modality (a list of row-paired arrays) queries
    (``metric``, ``csls_k`` and CSLS ``reference`` as in :class:`Scorer`)."""
    if isinstance(queries, np.ndarray):
        return Scorer(queries, gallery, metric=metric, csls_k=csls_k, reference=reference)
    check_fusion(fusion)
    parts = _check_parts(queries)
    if fusion == "mean":
        return Scorer(_mean_of_units(parts), gallery, metric=metric, csls_k=csls_k, reference=reference)
    return SumScorer([Scorer(x, gallery, metric=metric, csls_k=csls_k, reference=reference) for x in parts])


def _check_parts(queries: Sequence[np.ndarray]) -> list[np.ndarray]:
    parts = [check_embeddings(x, f"query modality {i}") for i, x in enumerate(queries)]
    if not parts:
        raise ValueError("fused queries need at least one modality")
    shapes = {x.shape for x in parts}
    if len(shapes) != 1:
        raise ValueError(f"fused query modalities must be row-paired with one dimension, got shapes {sorted(shapes)}")
    return parts
