"""The searcher: a stored index plus the model's encoders, answering queries of any of the
model's modalities (a text, an image or audio file, a vector in a file), alone or fused, with
the scoring code of :mod:`xmodal.retrieval`.

Queries are encoded by the encoders the model was fitted on (rebuilt by name, refused if
their cache key changed), mapped into the shared space (and rewritten by the model's bridge
to the gallery's modality, when it was fitted with one), and scored by cosine against the
gallery rows, or by CSLS (:mod:`xmodal.core.csls`) against the gallery's captions as
the reference queries. Over an ANN index, CSLS and score fusion re-score the top
:data:`RERANK_DEPTH` cosine candidates.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.arrays import check_int, unit_rows
from xmodal.core.config import DEFAULT_CSLS_K, default_models_dir
from xmodal.core.csls import csls as csls_scores
from xmodal.core.csls import top_k_mean
from xmodal.core.files import exclusive_lock
from xmodal.encoders import Encoder, encoder_paths
from xmodal.model import Model, route
from xmodal.retrieval.fusion import check_fusion, fuse_mean
from xmodal.retrieval.similarity import reference_means
from xmodal.search.gallery import IndexItem
from xmodal.search.storage import IndexStorage, current_generation
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
    probability: float | None = None  # P(true match), where the model is calibrated

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
        self._lock = threading.Lock()  # the storage and the CSLS statistics
        # one lock per encoder (they are not guaranteed thread-safe): a slow image query never
        # holds up a text query
        self._encoding = {modality: threading.Lock() for modality in encoders}

    @classmethod
    def build(
        cls,
        items: Sequence[IndexItem],
        model: Model,
        *,
        modality: str = "image",
        kind: str = "auto",
        captions: str | None = "text",
        store: EmbeddingStore | None = None,
        models_dir: str | Path | None = None,
        progress: bool = False,
    ) -> Searcher:
        """Encode ``items`` (through the embedding cache) into a new index of ``model``'s
        ``modality`` in its space; ``captions`` is the model's modality of the items' captions."""
        encoders = model.build_encoders(models_dir)
        if modality not in encoders:
            raise ValueError(f"the model has no modality {modality!r} for a gallery; it has {', '.join(encoders)}")
        storage = IndexStorage(
            model, modality, kind, gallery_kind=encoders[modality].modality, caption_modality=captions
        )
        return cls(storage, encoders).add(items, store=store, progress=progress)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoders: dict[str, str | None] | None = None,
        backend: str | None = None,
        models_dir: str | Path | None = None,
        trust: bool = False,
    ) -> Searcher:
        """Read an index directory and rebuild its model's encoders (``encoders`` / ``backend``,
        when given, must agree with the model). An encoder that would load files outside the
        models folder (``st:/elsewhere``, ``onnx:...``) is refused unless ``trust``: an index
        folder from elsewhere must not choose what code and weights this process loads."""
        storage = IndexStorage.load(path, encoders=encoders, backend=backend)
        if not trust:
            allowed = Path(models_dir if models_dir is not None else default_models_dir()).resolve()
            for modality, record in storage.model.encoders.items():
                outside = [p for p in encoder_paths(record.name) if not p.is_relative_to(allowed)]
                if outside:
                    raise ValueError(
                        f"{path}: its {modality} encoder {record.name!r} loads {outside[0]}, outside the models "
                        f"folder {allowed}; load the index with --trust if you trust it"
                    )
        return cls(storage, storage.model.build_encoders(models_dir))

    @classmethod
    @contextlib.contextmanager
    def updating(
        cls, path: str | Path, *, models_dir: str | Path | None = None, trust: bool = False
    ) -> Iterator[Searcher]:
        """The index at ``path`` to change (e.g. :meth:`add` to it), saved as a new generation
        when the block succeeds; the index's writer lock is held from loading to saving, so
        concurrent updates each see the other's items and none is lost."""
        current_generation(Path(path))  # an index, or a clear error (the lock needs its folder)
        with exclusive_lock(path):
            searcher = cls.load(path, models_dir=models_dir, trust=trust)
            yield searcher
            searcher.save(path)

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
        modality, caption_modality = self.storage.modality, self.storage.caption_modality
        values = [item.value(self.storage.gallery_kind) for item in items]
        rows = self._to_shared(store.embed(self.encoders[modality], values, label="index", progress=progress), modality)
        captions = [c for item in items for c in item.captions]
        reference = None
        if captions and self.storage.gallery_kind != "text" and caption_modality is not None:
            text = store.embed(self.encoders[caption_modality], captions, label="index/captions", progress=progress)
            reference = self._queries_to_shared(text, caption_modality)
        with self._lock:
            self.storage.append(items, rows, reference)
            self._hubness = None
        return self

    def search(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        *,
        audio: str | Path | None = None,
        queries: Mapping[str, str | Path] | None = None,
        k: int = 10,
        csls: bool = False,
        fusion: str = "mean",
        min_probability: float | None = None,
    ) -> list[Hit]:
        """The ``k`` best gallery rows for a query of one or several modalities, fused by
        ``fusion`` (``"mean"`` or ``"score"`` as in :mod:`xmodal.retrieval.fusion`).

        ``queries`` maps modalities of the model to values: a text for a text modality, a file
        path for an image, audio or vector one. ``text``, ``image`` and ``audio`` are shortcuts
        for the model's modality of that name (else its first modality of that kind). ``csls`` scores by CSLS with the model's neighbourhood (``csls_k``, or
        the default when the model scores without) against the gallery's captions as the
        reference queries (queries of the caption modality, on galleries built with captions).

        A hit carries the probability that it is a true match when the model is calibrated
        for the query's route (one query modality; ``xmodal calibrate``); ``min_probability``
        keeps only hits at least that likely (none: "no match"), and needs a calibration.
        """
        k = self._check_k(k)
        check_fusion(fusion)
        values = self._query_values({"text": text, "image": image, "audio": audio}, queries)
        calibrated = self._check_min_probability(min_probability, list(values), csls)
        parts = self._encode_query(values)
        [(rows, scores)] = self._rank(parts, k, csls, fusion)
        return self._hits(rows, scores, calibrated, min_probability)

    def search_many(
        self,
        values: Sequence[str | Path],
        *,
        modality: str | None = None,
        k: int = 10,
        csls: bool = False,
        min_probability: float | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` of each of ``values`` (queries of one ``modality``, by default the
        model's text one, with the same options), encoded as one batch and searched as one
        matrix: the same hits, in the order of ``values``. ``ValueError`` if any is refused."""
        k = self._check_k(k)
        modality = self._modality_of("text") if modality is None else modality
        texts = [self._query_values({}, {modality: value})[modality] for value in values]
        calibrated = self._check_min_probability(min_probability, [modality], csls)
        ranked = self._rank({modality: self._encode(modality, texts)}, k, csls, "mean") if texts else []
        return [self._hits(rows, scores, calibrated, min_probability) for rows, scores in ranked]

    @property
    def csls_k(self) -> int:
        """The CSLS neighbourhood of ``search(csls=True)``."""
        return self.model.csls_k or DEFAULT_CSLS_K

    def _check_k(self, k: int) -> int:
        n = len(self.storage)
        k = check_int(k, "k", minimum=1)
        if k > n:
            raise ValueError(f"k must be between 1 and the gallery size {n}, got {k}")
        return k

    def _rank(
        self, parts: dict[str, np.ndarray], k: int, csls: bool, fusion: str
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(rows, scores)`` of the ``k`` best gallery rows of each query: ``parts`` holds one
        row per query for each of its modalities (in the shared space), fused by ``fusion``;
        the gallery is searched once for all the queries."""
        if csls:
            self._check_csls(parts)
        vectors = list(parts.values()) if fusion == "score" else [unit_rows(fuse_mean(list(parts.values())))]
        if len(vectors) == 1 and not csls:
            scores, rows = self.storage.knn(vectors[0], k)
            return list(zip(rows, scores))
        n, csls_k = len(self.storage), self.csls_k
        depth = n if self.storage.exact else min(n, max(RERANK_DEPTH, 4 * k, csls_k))
        found = [self.storage.knn(q, depth) for q in vectors]
        ranked = []
        for i in range(len(vectors[0])):
            rows = np.unique(np.concatenate([r[i] for _, r in found]))
            rows = rows[rows >= 0]
            total = np.zeros(len(rows), np.float32)
            for q, (top, _) in zip(vectors, found):
                cosine = self.storage.take(rows) @ q[i]
                reference = top_k_mean(top[i : i + 1], csls_k)
                total += csls_scores(cosine[None], reference, self._hubness_of(rows))[0] if csls else cosine
            order = np.lexsort((rows, -total))[:k]
            ranked.append((rows[order], total[order]))
        return ranked

    def _to_shared(self, embeddings: np.ndarray, modality: str) -> np.ndarray:
        return np.ascontiguousarray(unit_rows(self.model.transform(embeddings, modality)), dtype=np.float32)

    def _queries_to_shared(self, embeddings: np.ndarray, modality: str) -> np.ndarray:
        """Queries of ``modality`` in the shared space, through the model's bridge to the
        gallery's modality when it has one."""
        shared = self.model.transform_queries(embeddings, modality, self.storage.modality)
        return np.ascontiguousarray(unit_rows(shared), dtype=np.float32)

    def _query_values(
        self, shortcuts: Mapping[str, str | Path | None], queries: Mapping[str, str | Path] | None
    ) -> dict[str, str]:
        """``{modality: value}`` of a query, the shortcuts (``{kind: value}``) resolved; checked
        against the model."""
        values = {m: str(v) for m, v in (queries or {}).items()}
        for kind, value in shortcuts.items():
            if value is None:
                continue
            modality = self._modality_of(kind)
            if modality in values:
                raise ValueError(f"two queries of modality {modality!r}")
            values[modality] = str(value)
        if not values:
            raise ValueError("a query needs a text, a file, or both")
        for modality, value in values.items():
            if modality not in self.encoders:
                raise ValueError(f"the model has no modality {modality!r}; it has {', '.join(self.encoders)}")
            if self.encoders[modality].modality == "text" and not value.strip():
                raise ValueError(f"the {modality} query is empty")
        return values

    def _modality_of(self, kind: str) -> str:
        """The model's modality a ``kind`` shortcut names: the one called ``kind``, else its
        first modality of that kind."""
        if kind in self.encoders:
            return kind
        found = [m for m, e in self.encoders.items() if e.modality == kind]
        if not found:
            raise ValueError(f"the model has no {kind} modality; it has {', '.join(self.encoders)}")
        return found[0]

    def _encode_query(self, values: dict[str, str]) -> dict[str, np.ndarray]:
        """A query's ``{modality: value}`` encoded, ``{modality: 1 x d row in the shared space}``."""
        return {modality: self._encode(modality, [value]) for modality, value in values.items()}

    def _encode(self, modality: str, values: list[str]) -> np.ndarray:
        """``values`` of ``modality`` encoded in one batch, in the shared space."""
        with self._encoding[modality]:
            encoded = self.encoders[modality].encode(values)
        return self._queries_to_shared(encoded, modality)

    def _check_csls(self, parts: dict[str, np.ndarray]) -> None:
        if not self.storage.reference.size:
            raise ValueError("CSLS needs reference queries: a gallery of files built from items with captions")
        if set(parts) != {self.storage.caption_modality}:
            raise ValueError(
                f"CSLS applies to {self.storage.caption_modality} queries only (the reference queries are the "
                "gallery's captions)"
            )

    def _hubness_of(self, rows: np.ndarray) -> np.ndarray:
        """CSLS ``r_reference`` of gallery ``rows``: mean cosine to their nearest captions."""
        with self._lock:
            if self._hubness is None:
                self._hubness = reference_means(self.storage.reference, self.storage.embeddings, self.csls_k)
            return self._hubness[rows]

    def _check_min_probability(self, min_probability: float | None, modalities: list[str], csls: bool) -> str | None:
        """The calibration route of a query of ``modalities`` (None: uncalibrated), checking that
        ``min_probability`` is a probability and has a calibration to apply."""
        key = route(modalities[0], self.storage.modality, csls) if len(modalities) == 1 else None
        calibrated = key if key in self.model.calibration else None
        if min_probability is None:
            return calibrated
        if isinstance(min_probability, bool) or not isinstance(min_probability, (int, float)):
            raise ValueError(f"min_probability must be a number between 0 and 1, got {min_probability!r}")
        if not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"min_probability must be between 0 and 1, got {min_probability}")
        if calibrated is None:
            known = ", ".join(self.model.calibration) or "none"
            raise ValueError(
                f"min_probability needs a calibrated model: this query's route is {key or 'a fusion of modalities'}, "
                f"the model is calibrated for: {known} (run `xmodal calibrate`)"
            )
        return calibrated

    def _hits(
        self, rows: np.ndarray, scores: np.ndarray, calibrated: str | None = None, min_probability: float | None = None
    ) -> list[Hit]:
        items = self.storage.items
        probabilities: list[float | None] = [None] * len(rows)
        if calibrated is not None:
            ranks = np.arange(1, len(rows) + 1)
            probabilities = self.model.calibration[calibrated].predict(scores, ranks).tolist()
        hits = [
            Hit(rank, float(score), items[row].id, items[row].path, items[row].captions, p)
            for rank, (row, score, p) in enumerate(zip(rows.tolist(), scores.tolist(), probabilities), start=1)
        ]
        if min_probability is None:
            return hits
        return [hit for hit in hits if hit.probability is not None and hit.probability >= min_probability]
