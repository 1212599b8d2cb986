"""Index storage: a gallery's rows in a shared space, a FAISS index over them, the items'
metadata, and the files that hold them.

An index directory holds::

    manifest.json    format, gallery modality and its kind (image, audio or text), the caption
                     modality, item count, dimension, FAISS kind, and the model's encoders and
                     scoring (for people; the model file is the source)
    model.npz        the model whose shared space the rows live in (:class:`~xmodal.model.Model`)
    embeddings.npy   gallery rows in the shared space, L2-normalised float32
    faiss.index      inner product: exact (``IndexFlatIP``) for small galleries, HNSW (or IVF,
                     by choice) from :data:`ANN_THRESHOLD` rows on
    items.parquet    id, path, captions of each row
    reference.npy    the captions of a gallery of files in the shared space: the reference
                     queries of CSLS (present when the items have captions)

The directory is written whole into a temporary sibling and swapped in (see
:func:`xmodal.core.files.atomic_folder`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import xmodal
from xmodal.core.config import INDEX_KINDS
from xmodal.core.files import atomic_folder
from xmodal.model import Model
from xmodal.search.gallery import IndexItem

FORMAT = "xmodal-index/2"
ANN_THRESHOLD = 50_000  # "auto" switches from exact search to HNSW at this many rows
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 384  # recall@10 0.978 on 1M vectors (benchmarks/ann.py)
IVF_PROBE_SHARE = 8  # IVF searches 1/8 of its lists (recall@10 0.93 on 300k vectors of benchmarks/ann.py)


def resolve_kind(kind: str, n_rows: int) -> str:
    """The FAISS index type for ``kind`` at ``n_rows`` rows (``auto``: flat below the threshold)."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "flat" if n_rows < ANN_THRESHOLD else "hnsw"
    return kind


def make_faiss_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    """An inner-product FAISS index of type ``kind`` (flat, hnsw or ivf) holding ``vectors``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    index: faiss.Index
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
    """``(scores, rows)`` of the ``k`` rows of highest inner product; HNSW explores at least
    ``k`` candidates."""
    params = None
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, k))  # type: ignore[attr-defined]
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return scores, rows


class IndexStorage:
    """The stored part of an index: rows, CSLS reference rows, items, FAISS; no encoders.

    ``model`` is the model the rows were mapped with; ``modality`` one of its modalities, whose
    values are of ``gallery_kind`` (image, audio or text; default: the modality's name for
    ``image`` and ``text``); ``caption_modality`` the model's modality of the items' captions,
    the reference queries of CSLS; ``kind`` one of :data:`~xmodal.core.config.INDEX_KINDS`.
    """

    def __init__(
        self,
        model: Model,
        modality: str = "image",
        kind: str = "auto",
        *,
        gallery_kind: str | None = None,
        caption_modality: str | None = "text",
    ):
        if modality not in model.modalities:
            raise ValueError(
                f"the model has no modality {modality!r} for a gallery; it has {', '.join(model.modalities)}"
            )
        gallery_kind = gallery_kind or modality
        if gallery_kind not in ("image", "audio", "text"):
            raise ValueError(f"a gallery holds image, audio or text values; name the kind of {modality!r}")
        resolve_kind(kind, 0)
        self.model = model
        self.modality = modality
        self.gallery_kind = gallery_kind
        self.caption_modality = caption_modality if caption_modality in model.modalities else None
        self.kind = kind
        self.items: list[IndexItem] = []
        self.embeddings = np.zeros((0, 0), np.float32)
        self.reference = np.zeros((0, 0), np.float32)
        self.faiss_kind = ""
        self._faiss: faiss.Index | None = None
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def row(self, item_id: str) -> int:
        """The row of ``item_id``; ``KeyError`` with a clear message if there is none."""
        row = self._rows.get(item_id)
        if row is None:
            raise KeyError(f"unknown item id {item_id!r}")
        return row

    def check_new(self, items: list[IndexItem]) -> None:
        """Refuse items that cannot join this gallery (empty or duplicate ids, wrong modality)."""
        new: set[str] = set()  # ids of ``items`` so far (the index's own are in self._rows)
        for item in items:
            if not item.id:
                raise ValueError("an item has an empty id")
            if item.id in self._rows or item.id in new:
                raise ValueError(f"duplicate item id {item.id!r}: ids must be unique in an index")
            new.add(item.id)
            item.value(self.gallery_kind)

    def append(self, items: list[IndexItem], rows: np.ndarray, reference: np.ndarray | None) -> None:
        """Add ``items`` with their unit ``rows`` (and captions' ``reference`` rows, if any)."""
        self.check_new(items)
        self.embeddings = _append(self.embeddings, rows)
        if reference is not None:
            self.reference = _append(self.reference, reference)
        self._rows.update({item.id: len(self.items) + i for i, item in enumerate(items)})
        self.items += items
        kind = resolve_kind(self.kind, len(self.items))
        if self._faiss is None or kind != self.faiss_kind:
            self._faiss, self.faiss_kind = make_faiss_index(self.embeddings, kind), kind
        else:
            self._faiss.add(rows)

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the ``k`` gallery rows of highest inner product (:func:`faiss_search`)."""
        assert self._faiss is not None, "the index is empty"
        return faiss_search(self._faiss, queries, k)

    @property
    def exact(self) -> bool:
        """Whether FAISS searches exhaustively (flat)."""
        return self.faiss_kind == "flat"

    # -- persistence ----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """What the index holds and how it was built (written to ``manifest.json``)."""
        model = self.model.header()
        return {
            "format": FORMAT,
            "modality": self.modality,
            "gallery_kind": self.gallery_kind,
            "caption_modality": self.caption_modality,
            "count": len(self.items),
            "dim": int(self.embeddings.shape[1]),
            "kind": self.kind,
            "faiss_index": self.faiss_kind,
            "model": "model.npz",
            "encoders": model["encoders"],
            "backend": model["backend"],
            "scoring": model["scoring"],
            "aligner": {"class": type(self.model.aligner).__name__, "params": self.model.aligner.get_params()},
            "versions": {"xmodal": xmodal.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def save(self, path: str | Path) -> Path:
        """Write the index directory ``path`` whole (replacing an index there); returns it."""
        path = Path(path)
        if path.is_file() or (path.is_dir() and any(path.iterdir()) and not (path / "manifest.json").is_file()):
            raise ValueError(f"refusing to write an index into {path}: it exists and is not an xmodal index")
        assert self._faiss is not None, "an empty index cannot be saved"
        with atomic_folder(path) as tmp:
            self.model.save(tmp / "model.npz")
            np.save(tmp / "embeddings.npy", self.embeddings)
            faiss.write_index(self._faiss, str(tmp / "faiss.index"))
            if self.reference.size:
                np.save(tmp / "reference.npy", self.reference)
            pq.write_table(_items_table(self.items), tmp / "items.parquet")
            (tmp / "manifest.json").write_text(json.dumps(self.manifest(), indent=1))
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, encoders: dict[str, str | None] | None = None, backend: str | None = None
    ) -> IndexStorage:
        """Read an index directory; ``encoders`` / ``backend``, when given, must agree with its
        model (:class:`~xmodal.model.EncoderMismatchError` otherwise)."""
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise FileNotFoundError(f"not an xmodal index: {manifest_file} not found")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(
                f"{path}: unsupported index format {manifest.get('format')!r} (expected {FORMAT}); "
                "build it again with `xmodal index build`"
            )
        model = Model.load(path / manifest["model"], encoders=encoders, backend=backend)
        storage = cls(
            model,
            manifest["modality"],
            manifest["kind"],
            gallery_kind=manifest.get("gallery_kind"),  # absent before any modality: image or text
            caption_modality=manifest.get("caption_modality", "text"),
        )
        storage.embeddings = np.load(path / "embeddings.npy", allow_pickle=False)
        if (path / "reference.npy").is_file():
            storage.reference = np.load(path / "reference.npy", allow_pickle=False)
        storage.items = _read_items(path / "items.parquet")
        storage._rows = {item.id: row for row, item in enumerate(storage.items)}
        storage._faiss = faiss.read_index(str(path / "faiss.index"))
        storage.faiss_kind = manifest["faiss_index"]
        if not len(storage.items) == storage.embeddings.shape[0] == storage._faiss.ntotal == manifest["count"]:
            raise ValueError(
                f"{path}: items, embeddings and FAISS index disagree on the number of rows; rebuild the index"
            )
        return storage


def _append(existing: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows if existing.size == 0 else np.concatenate([existing, rows])


def _items_table(items: list[IndexItem]) -> pa.Table:
    return pa.table({
        "id": pa.array([i.id for i in items], pa.string()),
        "path": pa.array([i.path for i in items], pa.string()),
        "captions": pa.array([list(i.captions) for i in items], pa.list_(pa.string())),
    })  # fmt: skip


def _read_items(path: Path) -> list[IndexItem]:
    table = pq.read_table(path).to_pydict()
    return [IndexItem(i, p, tuple(c)) for i, p, c in zip(table["id"], table["path"], table["captions"])]
