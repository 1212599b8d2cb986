"""The searcher: a stored index plus the model's encoders, answering text, image and fused
queries with the scoring code of :mod:`xmodal.retrieval`.

Queries are encoded by the encoders the model was fitted on (rebuilt by name, refused if
their cache key changed), mapped into the shared space, and scored by cosine against the
gallery rows, or by CSLS (:mod:`xmodal.retrieval.csls`) against the gallery's captions as
the reference queries. Over an ANN index, CSLS and score fusion re-score the top
:data:`RERANK_DEPTH` cosine candidates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.arrays import check_int, unit_rows
from xmodal.core.config import DEFAULT_CSLS_K
from xmodal.encoders import Encoder
from xmodal.model import Model
from xmodal.retrieval.csls import csls as csls_scores
from xmodal.retrieval.csls import top_k_mean
from xmodal.retrieval.fusion import check_fusion, fuse_mean
from xmodal.retrieval.similarity import reference_means
from xmodal.search.gallery import IndexItem
from xmodal.search.storage import IndexStorage
from xmodal.store import EmbeddingStore

RERANK_DEPTH = 100  # ANN candidates re-scored for CSLS and score fusion


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    id: str
    path: str | None
    captions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "captions": list(self.captions)}


class Searcher:
    """Search an :class:`IndexStorage` with the encoders of its model.

    Build with :meth:`build`, grow with :meth:`add`, persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, storage: IndexStorage, encoders: dict[str, Encoder]):
        self.storage = storage
        self.encoders = encoders
        self._hubness: np.ndarray | None = None
        self._lock = threading.Lock()  # encoders are not guaranteed thread-safe

    @classmethod
    def build(
        cls,
        items: Sequence[IndexItem],
        model: Model,
        *,
        modality: str = "image",
        kind: str = "auto",
        store: EmbeddingStore | None = None,
        models_dir: str | Path | None = None,
        progress: bool = False,
    ) -> Searcher:
        """Encode ``items`` (through the embedding cache) into a new index in ``model``'s space."""
        searcher = cls(IndexStorage(model, modality, kind), model.build_encoders(models_dir))
        return searcher.add(items, store=store, progress=progress)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoders: dict[str, str | None] | None = None,
        backend: str | None = None,
        models_dir: str | Path | None = None,
    ) -> Searcher:
        """Read an index directory and rebuild its model's encoders (``encoders`` / ``backend``,
        when given, must agree with the model)."""
        storage = IndexStorage.load(path, encoders=encoders, backend=backend)
        return cls(storage, storage.model.build_encoders(models_dir))

    def save(self, path: str | Path) -> Path:
        with self._lock:
            return self.storage.save(path)

    @property
    def model(self) -> Model:
        return self.storage.model

    @property
    def modality(self) -> str:
        return self.storage.modality

    @property
    def items(self) -> list[IndexItem]:
        return self.storage.items

    def __len__(self) -> int:
        return len(self.storage)

    def item(self, item_id: str) -> IndexItem:
        """The item called ``item_id``; ``KeyError`` with a clear message if there is none."""
        return self.storage.items[self.storage.row(item_id)]

    def add(
        self, items: Sequence[IndexItem], *, store: EmbeddingStore | None = None, progress: bool = False
    ) -> Searcher:
        """Encode and append ``items`` (existing rows are kept, not re-encoded); returns self."""
        items = list(items)
        if not items:
            raise ValueError("no items to add")
        self.storage.check_new(items)
        store = store or EmbeddingStore()
        modality = self.storage.modality
        values = [item.value(modality) for item in items]
        rows = self._to_shared(store.embed(self.encoders[modality], values, label="index", progress=progress), modality)
        captions = [c for item in items for c in item.captions] if modality == "image" else []
        reference = None
        if captions:
            text = store.embed(self.encoders["text"], captions, label="index/captions", progress=progress)
            reference = self._to_shared(text, "text")
        with self._lock:
            self.storage.append(items, rows, reference)
            self._hubness = None
        return self

    def search(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        *,
        k: int = 10,
        csls: bool = False,
        fusion: str = "mean",
    ) -> list[Hit]:
        """The ``k`` best gallery rows for a text, an image, or both (fused by ``fusion``,
        ``"mean"`` or ``"score"`` as in :mod:`xmodal.retrieval.fusion`).

        ``csls`` scores by CSLS with the model's neighbourhood (``csls_k``, or the default when
        the model scores without) against the gallery's captions as the reference queries
        (text queries on image galleries built with captions).
        """
        n = len(self.storage)
        k = check_int(k, "k", minimum=1)
        if k > n:
            raise ValueError(f"k must be between 1 and the gallery size {n}, got {k}")
        check_fusion(fusion)
        parts = self._encode_query(text, image)
        if csls:
            self._check_csls(parts)
        queries = list(parts.values()) if fusion == "score" else [unit_rows(fuse_mean(list(parts.values())))]
        if len(queries) == 1 and not csls:
            scores, rows = self.storage.knn(queries[0], k)
            return self._hits(rows[0], scores[0])
        csls_k = self.csls_k
        depth = n if self.storage.exact else min(n, max(RERANK_DEPTH, 4 * k, csls_k))
        found = [self.storage.knn(q, depth) for q in queries]
        rows = np.unique(np.concatenate([r[0] for _, r in found]))
        rows = rows[rows >= 0]
        total = np.zeros(len(rows), np.float32)
        for q, (top, _) in zip(queries, found):
            cosine = self.storage.embeddings[rows] @ q[0]
            total += csls_scores(cosine[None], top_k_mean(top, csls_k), self._hubness_of(rows))[0] if csls else cosine
        order = np.lexsort((rows, -total))[:k]
        return self._hits(rows[order], total[order])

    @property
    def csls_k(self) -> int:
        """The CSLS neighbourhood of ``search(csls=True)``."""
        return self.model.csls_k or DEFAULT_CSLS_K

    def _to_shared(self, embeddings: np.ndarray, modality: str) -> np.ndarray:
        return np.ascontiguousarray(unit_rows(self.model.transform(embeddings, modality)), dtype=np.float32)

    def _encode_query(self, text: str | None, image: str | Path | None) -> dict[str, np.ndarray]:
        if text is None and image is None:
            raise ValueError("a query needs a text or an image (or both)")
        if text is not None and not text.strip():
            raise ValueError("the text query is empty")
        parts = {}
        with self._lock:
            for modality, value in (("text", text), ("image", image)):
                if value is not None:
                    parts[modality] = self._to_shared(self.encoders[modality].encode([str(value)]), modality)
        return parts

    def _check_csls(self, parts: dict[str, np.ndarray]) -> None:
        if self.storage.modality != "image" or not self.storage.reference.size:
            raise ValueError("CSLS needs reference queries: an image gallery built from items with captions")
        if set(parts) != {"text"}:
            raise ValueError("CSLS applies to text queries only (the reference queries are the gallery's captions)")

    def _hubness_of(self, rows: np.ndarray) -> np.ndarray:
        """CSLS ``r_reference`` of gallery ``rows``: mean cosine to their nearest captions."""
        with self._lock:
            if self._hubness is None:
                self._hubness = reference_means(self.storage.reference, self.storage.embeddings, self.csls_k)
            return self._hubness[rows]

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        items = self.storage.items
        return [
            Hit(rank, float(score), items[row].id, items[row].path, items[row].captions)
            for rank, (row, score) in enumerate(zip(rows.tolist(), scores.tolist()), start=1)
        ]
