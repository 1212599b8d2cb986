"""A saved, searchable gallery: rows in an aligner's shared space, a FAISS index over them,
item metadata, and a manifest saying how it was built.

An index directory holds::

    manifest.json    gallery modality, encoders (name, cache key, dim), aligner class and
                     params, FAISS kind, item count, versions of xmodal / faiss / numpy
    aligner.npz      the fitted aligner (:meth:`Aligner.save`)
    embeddings.npy   gallery rows in the shared space, L2-normalised float32
    faiss.index      inner product: exact (``IndexFlatIP``) for small galleries, HNSW (or IVF,
                     by choice) from :data:`ANN_THRESHOLD` rows on
    items.parquet    id, path, captions of each row
    reference.npy    an image gallery's captions in the shared space: the reference queries
                     of CSLS (present when the items have captions)

Loading rebuilds the query encoders named in the manifest and refuses any whose cache key
differs (other weights or preprocessing): their embeddings would not be comparable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import xmodal
from xmodal.align import Aligner
from xmodal.encoders import get_encoder
from xmodal.encoders.base import Encoder
from xmodal.fusion import check_fusion, fuse_mean
from xmodal.gallery import IndexItem
from xmodal.similarity import Scorer, check_int, unit_rows
from xmodal.store import EmbeddingStore

FORMAT = "xmodal-index/1"
KINDS = ("auto", "flat", "hnsw", "ivf")
ANN_THRESHOLD = 50_000  # "auto" switches from exact search to HNSW at this many rows
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 384  # recall@10 0.978 on 1M vectors (benchmarks/ann.py)
IVF_PROBE_SHARE = 8  # IVF searches 1/8 of its lists (recall@10 0.93 on 300k vectors of benchmarks/ann.py)
RERANK_DEPTH = 100  # ANN candidates re-scored for CSLS and score fusion
MODALITIES = ("image", "text")


class IndexMismatchError(ValueError):
    """The query encoders (or the file format) do not match those the index was built with."""


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    id: str
    path: str | None
    captions: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "captions": list(self.captions)}


def resolve_kind(kind: str, n_rows: int) -> str:
    """The FAISS index type for ``kind`` at ``n_rows`` rows (``auto``: flat below the threshold)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return "flat" if n_rows < ANN_THRESHOLD else "hnsw"
    return kind


def make_faiss_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    """An inner-product FAISS index of type ``kind`` (flat, hnsw or ivf) holding ``vectors``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        n_lists = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * n_lists), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = -(-n_lists // IVF_PROBE_SHARE)
    else:
        raise ValueError(f"unknown FAISS index type {kind!r}; choose flat, hnsw or ivf")
    index.add(vectors)
    return index


def faiss_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` of the top ``k`` rows; HNSW explores at least ``k`` candidates."""
    params = None
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, k))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)


class Index:
    """A gallery of one modality in an aligner's shared space, searchable by text or image.

    Build with :meth:`build`, grow with :meth:`add`, persist with :meth:`save` /
    :meth:`load`. Search is by cosine similarity (or CSLS against the gallery's captions).
    """

    def __init__(
        self,
        aligner: Aligner,
        encoders: dict[str, Encoder],
        modality: str = "image",
        *,
        kind: str = "auto",
        backend: str = "onnx",
        csls_k: int = 10,
    ):
        if modality not in MODALITIES:
            raise ValueError(f"gallery modality must be image or text, got {modality!r}")
        resolve_kind(kind, 0)
        self.aligner = aligner
        self.encoders = encoders
        self.modality = modality
        self.kind = kind
        self.backend = backend
        self.csls_k = check_int(csls_k, "csls_k", minimum=1)
        self.items: list[IndexItem] = []
        self.embeddings = np.zeros((0, 0), np.float32)
        self.reference = np.zeros((0, 0), np.float32)
        self._rows: dict[str, int] = {}
        self._faiss: faiss.Index | None = None
        self._faiss_kind = ""
        self._hubness: np.ndarray | None = None
        self._lock = threading.Lock()  # encoders are not guaranteed thread-safe

    # -- building -----------------------------------------------------------------
    @classmethod
    def build(
        cls,
        items: Sequence[IndexItem],
        aligner: Aligner,
        *,
        modality: str = "image",
        text_encoder: str = "minilm",
        image_encoder: str = "efficientnet-lite0",
        kind: str = "auto",
        store: EmbeddingStore | None = None,
        backend: str = "onnx",
        csls_k: int = 10,
        progress: bool = False,
    ) -> Index:
        """Encode ``items`` (through the embedding cache) into a new index."""
        store = store or EmbeddingStore()
        encoders = {
            "text": get_encoder(text_encoder, backend=backend, cache_dir=store.root),
            "image": get_encoder(image_encoder, backend=backend, cache_dir=store.root),
        }
        index = cls(aligner, encoders, modality, kind=kind, backend=backend, csls_k=csls_k)
        return index.add(items, store=store, progress=progress)

    def add(self, items: Sequence[IndexItem], *, store: EmbeddingStore | None = None, progress: bool = False) -> Index:
        """Encode and append ``items`` (existing rows are kept, not re-encoded); returns self."""
        items = list(items)
        if not items:
            raise ValueError("no items to add")
        self._check_new_items(items)
        store = store or EmbeddingStore()
        values = [item.path if self.modality == "image" else item.captions[0] for item in items]
        rows = self._to_shared(store.embed(self.encoders[self.modality], values, label="index", progress=progress), self.modality)
        captions = [c for item in items for c in item.captions] if self.modality == "image" else []
        reference = self._to_shared(store.embed(self.encoders["text"], captions, label="index/captions", progress=progress), "text") if captions else None
        with self._lock:
            self.embeddings = _append(self.embeddings, rows)
            if reference is not None:
                self.reference = _append(self.reference, reference)
            self._rows.update({item.id: len(self.items) + i for i, item in enumerate(items)})
            self.items += items
            self._hubness = None
            kind = resolve_kind(self.kind, len(self.items))
            if self._faiss is None or kind != self._faiss_kind:
                self._faiss, self._faiss_kind = make_faiss_index(self.embeddings, kind), kind
            else:
                self._faiss.add(rows)
        return self

    def _check_new_items(self, items: list[IndexItem]) -> None:
        seen = set(self._rows)
        for item in items:
            if not item.id:
                raise ValueError("an item has an empty id")
            if item.id in seen:
                raise ValueError(f"duplicate item id {item.id!r}: ids must be unique in an index")
            seen.add(item.id)
            if self.modality == "image" and not item.path:
                raise ValueError(f"item {item.id!r} has no image, but this index is a gallery of images")
            if self.modality == "text" and len(item.captions) != 1:
                raise ValueError(f"item {item.id!r} needs exactly one text in a gallery of texts, has {len(item.captions)}")

    def _to_shared(self, embeddings: np.ndarray, modality: str) -> np.ndarray:
        return np.ascontiguousarray(unit_rows(self.aligner.transform(embeddings, modality)), dtype=np.float32)

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index directory ``path`` (the manifest last); returns it."""
        path = Path(path)
        if path.is_file() or (path.is_dir() and any(path.iterdir()) and not (path / "manifest.json").is_file()):
            raise ValueError(f"refusing to write an index into {path}: it exists and is not an xmodal index")
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.aligner.save(path / "aligner.npz")
            np.save(path / "embeddings.npy", self.embeddings)
            faiss.write_index(self._faiss, str(path / "faiss.index"))
            if self.reference.size:
                np.save(path / "reference.npy", self.reference)
            pq.write_table(_items_table(self.items), path / "items.parquet")
            (path / "manifest.json").write_text(json.dumps(self.manifest(), indent=1))
        return path

    def manifest(self) -> dict:
        """What the index holds and how it was built (written to ``manifest.json``)."""
        return {
            "format": FORMAT,
            "modality": self.modality,
            "count": len(self.items),
            "dim": int(self.embeddings.shape[1]),
            "kind": self.kind,
            "faiss_index": self._faiss_kind,
            "csls_k": self.csls_k,
            "backend": self.backend,
            "encoders": {m: {"name": e.name, "cache_key": e.cache_key, "dim": self.aligner.dims_[m]} for m, e in self.encoders.items()},
            "aligner": {"class": type(self.aligner).__name__, "params": self.aligner.get_params(), "file": "aligner.npz"},
            "versions": {"xmodal": xmodal.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        text_encoder: str | None = None,
        image_encoder: str | None = None,
        backend: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> Index:
        """Read an index; the query encoders are the manifest's (``text_encoder`` /
        ``image_encoder``, when given, must name the same). Raises
        :class:`IndexMismatchError` when an encoder differs from the one the index was built with."""
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise FileNotFoundError(f"not an xmodal index: {manifest_file} not found")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(f"{path}: unsupported index format {manifest.get('format')!r} (expected {FORMAT})")
        backend = backend or manifest["backend"]
        wanted = {"text": text_encoder, "image": image_encoder}
        encoders = {}
        for modality, built in manifest["encoders"].items():
            name = wanted[modality] or built["name"]
            if name != built["name"]:
                raise IndexMismatchError(
                    f"{path} was built with {modality} encoder {built['name']!r}, not {name!r}: "
                    "embeddings of different encoders are not comparable; rebuild the index or search without it"
                )
            encoder = get_encoder(name, backend=backend, cache_dir=cache_dir)
            if encoder.cache_key != built["cache_key"]:
                raise IndexMismatchError(
                    f"{path}: {modality} encoder {name!r} is now {encoder.cache_key!r}, but the index was built "
                    f"with {built['cache_key']!r} (other weights, preprocessing or backend); rebuild the index"
                )
            encoders[modality] = encoder
        index = cls(Aligner.load(path / manifest["aligner"]["file"]), encoders, manifest["modality"],
                    kind=manifest["kind"], backend=backend, csls_k=manifest["csls_k"])
        index.embeddings = np.load(path / "embeddings.npy", allow_pickle=False)
        if (path / "reference.npy").is_file():
            index.reference = np.load(path / "reference.npy", allow_pickle=False)
        index.items = _read_items(path / "items.parquet")
        index._rows = {item.id: row for row, item in enumerate(index.items)}
        index._faiss = faiss.read_index(str(path / "faiss.index"))
        index._faiss_kind = manifest["faiss_index"]
        if not len(index.items) == index.embeddings.shape[0] == index._faiss.ntotal == manifest["count"]:
            raise ValueError(f"{path}: items, embeddings and FAISS index disagree on the number of rows; rebuild the index")
        return index

    # -- queries ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def item(self, item_id: str) -> IndexItem:
        """The item called ``item_id``; ``KeyError`` with a clear message if there is none."""
        row = self._rows.get(item_id)
        if row is None:
            raise KeyError(f"unknown item id {item_id!r}")
        return self.items[row]

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
        ``"mean"`` or ``"score"`` as in :mod:`xmodal.fusion`).

        ``csls`` scores by CSLS (Lample et al. 2018) against the gallery's captions as the
        reference queries (text queries on image galleries built with captions); over an
        ANN index it re-scores the top :data:`RERANK_DEPTH` cosine candidates.
        """
        n = len(self.items)
        k = check_int(k, "k", minimum=1)
        if k > n:
            raise ValueError(f"k must be between 1 and the gallery size {n}, got {k}")
        check_fusion(fusion)
        parts = self._encode_query(text, image)
        if csls:
            self._check_csls(parts)
        queries = list(parts.values()) if fusion == "score" else [unit_rows(fuse_mean(list(parts.values())))]
        if len(queries) == 1 and not csls:
            scores, rows = faiss_search(self._faiss, queries[0], k)
            return self._hits(rows[0], scores[0])
        depth = n if self._faiss_kind == "flat" else min(n, max(RERANK_DEPTH, 4 * k, self.csls_k))
        found = [faiss_search(self._faiss, q, depth) for q in queries]
        rows = np.unique(np.concatenate([r[0] for _, r in found]))
        rows = rows[rows >= 0]
        total = np.zeros(len(rows), np.float32)
        for q, (top, _) in zip(queries, found):
            cosine = self.embeddings[rows] @ q[0]
            total += (2 * cosine - top[0, : self.csls_k].mean() - self._hubness_of(rows)) if csls else cosine
        order = np.lexsort((rows, -total))[:k]
        return self._hits(rows[order], total[order])

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
        if self.modality != "image" or not self.reference.size:
            raise ValueError("CSLS needs reference queries: an image gallery built from items with captions")
        if set(parts) != {"text"}:
            raise ValueError("CSLS applies to text queries only (the reference queries are the gallery's captions)")

    def _hubness_of(self, rows: np.ndarray) -> np.ndarray:
        """CSLS ``r_q``: each gallery row's mean cosine to its ``csls_k`` nearest captions."""
        with self._lock:
            if self._hubness is None:
                k = min(self.csls_k, self.reference.shape[0])
                hubness = np.empty(len(self.items), np.float32)
                for chunk, s in Scorer(self.embeddings, self.reference).chunks():
                    hubness[chunk] = np.partition(s, s.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
                self._hubness = hubness
            return self._hubness[rows]

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        return [
            Hit(rank, float(score), item.id, item.path, item.captions)
            for rank, (row, score) in enumerate(zip(rows.tolist(), scores.tolist()), start=1)
            for item in [self.items[row]]
        ]


def _append(existing: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows if existing.size == 0 else np.concatenate([existing, rows])


def _items_table(items: list[IndexItem]) -> pa.Table:
    return pa.table({
        "id": pa.array([i.id for i in items], pa.string()),
        "path": pa.array([i.path for i in items], pa.string()),
        "captions": pa.array([list(i.captions) for i in items], pa.list_(pa.string())),
    })


def _read_items(path: Path) -> list[IndexItem]:
    table = pq.read_table(path).to_pydict()
    return [IndexItem(i, p, tuple(c)) for i, p, c in zip(table["id"], table["path"], table["captions"])]

