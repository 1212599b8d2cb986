"""Index storage: a gallery's rows in a shared space, a FAISS index over them, the items'
metadata, and the files that hold them.

An index directory holds *generations*: each save writes a complete new one, and one atomic
rename of ``CURRENT`` switches readers to it::

    CURRENT                 the name of the current generation (``g000003``)
    generations/g000003/    one generation, never modified once written:

    manifest.json    format, gallery modality and its kind (image, audio or text), the caption
                     modality, item count, dimension, FAISS kind, the model's encoders and
                     scoring (for people; the model file is the source), and the size and
                     SHA-256 of every file below, verified on load
    model.npz        the model whose shared space the rows live in (:class:`~xmodal.model.Model`)
    embeddings.npy   gallery rows in the shared space, L2-normalised float32
    faiss.index      inner product: exact (``IndexFlatIP``) for small galleries, HNSW (or IVF,
                     by choice) from :data:`ANN_THRESHOLD` rows on
    items.parquet    id, path, captions of each row
    reference.npy    the captions of a gallery of files in the shared space: the reference
                     queries of CSLS (present when the items have captions)

    An ``ivfpq`` index (:mod:`xmodal.search.ivfpq`, for galleries beyond memory) holds, in
    place of ``embeddings.npy`` and ``faiss.index``:

    vectors/         the gallery rows as a shard folder (:mod:`xmodal.store.shards`), memory-
                     mapped on load; a save hard-links the shards of the generation it was
                     loaded from (they never change) and writes the new rows as new shards
    ivfpq.json       the IVF-PQ's parameters, the fingerprint of ``vectors/`` and the size and
                     SHA-256 of the two files below
    ivfpq.index      the trained quantizers and the directory of the inverted lists
    ivfpq.ivfdata    the inverted lists (PQ codes and ids), memory-mapped on load

    Loading it checks the SHA-256 of the small files (the manifest's ``files``: model, items,
    reference, ``ivfpq.json``, ``ivfpq.index``), the size of ``ivfpq.ivfdata``, and each shard's
    header and size; the SHA-256 of the lists and of the shards (``vectors/shards.json``) are
    checked by :meth:`~xmodal.search.ivfpq.IvfPqIndex.verify` and whenever the shards are read
    in full (a retraining), not on every load. ``index add`` encodes new rows with the trained
    quantizers until the gallery outgrows twice the rows they were trained for, then trains
    again on all rows (:meth:`~xmodal.search.ivfpq.IvfPqIndex.add`). Searches read only the
    candidates' rows; CSLS reads every row once (the gallery's hubness statistics).

    manifest.json           a copy of the current generation's manifest, for people
    .lock                   writers hold it (``flock``), from loading to switching

A writer that dies leaves the previous generation current and whole; the previous generation
is kept after a switch (a reader may be loading it), older ones are deleted. An index of the
first layout (the files directly in the folder) still loads, and its next save converts it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import xmodal
from xmodal.core.config import INDEX_KINDS
from xmodal.core.files import exclusive_lock, file_digest, fsync_folder, write_text_atomic
from xmodal.model import Model
from xmodal.search.gallery import IndexItem
from xmodal.search.ivfpq import LISTS as IVFPQ_LISTS
from xmodal.search.ivfpq import IvfPqError, IvfPqIndex
from xmodal.store.shards import MANIFEST as SHARDS_MANIFEST
from xmodal.store.shards import Shards, ShardWriter

FORMAT = "xmodal-index/2"
FAILPOINT_ENV = "XMODAL_FAILPOINT"  # fault tests: "index-save:STAGE" makes a save SIGKILL its process there
SAVE_STAGES = ("files", "renamed", "switched")
CURRENT, GENERATIONS, MANIFEST = "CURRENT", "generations", "manifest.json"
GENERATION = re.compile(r"g\d{6,}")
MANIFEST_FIELDS = {"format": str, "modality": str, "count": int, "kind": str, "faiss_index": str, "model": str}
ANN_THRESHOLD = 50_000  # "auto" switches from exact search to HNSW at this many rows
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 384  # recall@10 0.978 on 1M vectors (benchmarks/ann.py)
IVF_PROBE_SHARE = 8  # IVF searches 1/8 of its lists (recall@10 0.93 on 300k vectors of benchmarks/ann.py)
VECTORS = "vectors"  # ivfpq: the gallery rows, a shard folder
VECTORS_ABOUT = {"rows": "the gallery rows of an xmodal index, in its model's shared space"}
SHARD_ROWS = 1 << 20  # ivfpq: rows per shard a save writes


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
        self._embeddings = np.zeros((0, 0), np.float32)
        self.reference = np.zeros((0, 0), np.float32)
        self.faiss_kind = ""
        self._faiss: faiss.Index | None = None
        self._ivfpq: IvfPqIndex | None = None  # kind ivfpq: the index and the rows (mapped shards + new rows)
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def embeddings(self) -> np.ndarray:
        """The gallery rows, in memory (an ivfpq index reads them from its shards: see :meth:`take`)."""
        return self._ivfpq.rows.to_array() if self._ivfpq is not None else self._embeddings

    @embeddings.setter
    def embeddings(self, rows: np.ndarray) -> None:
        self._embeddings = rows

    @property
    def dim(self) -> int:
        return self._ivfpq.dim if self._ivfpq is not None else int(self._embeddings.shape[1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The gallery rows numbered ``rows`` (ivfpq: read from the memory-mapped shards)."""
        return self._ivfpq.rows.take(rows) if self._ivfpq is not None else self._embeddings[rows]

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
        if self.kind == "ivfpq":  # the rows join the index's row source, not self._embeddings
            rows = np.ascontiguousarray(rows, dtype=np.float32)
            self._ivfpq = IvfPqIndex.from_rows(rows) if self._ivfpq is None else self._ivfpq.add(rows)
            self.faiss_kind = "ivfpq"
        else:
            self.embeddings = _append(self.embeddings, rows)
        if reference is not None:
            self.reference = _append(self.reference, reference)
        self._rows.update({item.id: len(self.items) + i for i, item in enumerate(items)})
        self.items += items
        if self.kind == "ivfpq":
            return
        kind = resolve_kind(self.kind, len(self.items))
        if self._faiss is None or kind != self.faiss_kind:
            self._faiss, self.faiss_kind = make_faiss_index(self.embeddings, kind), kind
        else:
            self._faiss.add(rows)

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the ``k`` gallery rows of highest inner product (:func:`faiss_search`;
        ivfpq: :meth:`~xmodal.search.ivfpq.IvfPqIndex.search`, exact scores of its candidates)."""
        if self._ivfpq is not None:
            return self._ivfpq.search(queries, k)
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
        ivfpq = {}
        if self._ivfpq is not None:
            ivfpq = {"ivfpq": {**asdict(self._ivfpq.params), "trained_for": self._ivfpq.trained_for}}
        return {
            "format": FORMAT,
            "modality": self.modality,
            "gallery_kind": self.gallery_kind,
            "caption_modality": self.caption_modality,
            "count": len(self.items),
            "dim": self.dim,
            "kind": self.kind,
            "faiss_index": self.faiss_kind,
            "model": "model.npz",
            "encoders": model["encoders"],
            "backend": model["backend"],
            "scoring": model["scoring"],
            "aligner": {"class": type(self.model.aligner).__name__, "params": self.model.aligner.get_params()},
            "versions": {"xmodal": xmodal.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **ivfpq,
        }

    def save(self, path: str | Path) -> Path:
        """Write a new generation of the index folder ``path`` and make it current (see the
        module docstring); returns ``path``."""
        path = Path(path)
        if path.is_file() or (path.is_dir() and any(path.iterdir()) and not is_index(path)):
            raise ValueError(f"refusing to write an index into {path}: it exists and is not an xmodal index")
        assert self._faiss is not None or self._ivfpq is not None, "an empty index cannot be saved"
        path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path):
            generations = path / GENERATIONS
            generations.mkdir(parents=True, exist_ok=True)
            numbers = [int(g.name[1:]) for g in generations.iterdir() if GENERATION.fullmatch(g.name)]
            name = f"g{max(numbers, default=0) + 1:06d}"
            tmp = generations / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            manifest = self._write_files(tmp)
            _failpoint("files")
            tmp.rename(generations / name)
            fsync_folder(generations)
            _failpoint("renamed")
            write_text_atomic(path / CURRENT, name + "\n")  # the switch
            _failpoint("switched")
            write_text_atomic(path / MANIFEST, manifest)
            _prune(path, keep=name)
        return path

    def _write_files(self, folder: Path) -> str:
        """Every file of a generation, flushed, then the manifest with their checksums (returned;
        ivfpq: the lists file and the shards are left out, see the module docstring)."""
        self.model.save(folder / "model.npz")
        if self._ivfpq is not None:
            self._ivfpq.write(folder, self._write_vectors(folder / VECTORS))
        else:
            assert self._faiss is not None, "an empty index cannot be saved"
            np.save(folder / "embeddings.npy", self.embeddings)
            faiss.write_index(self._faiss, str(folder / "faiss.index"))
        if self.reference.size:
            np.save(folder / "reference.npy", self.reference)
        pq.write_table(_items_table(self.items), folder / "items.parquet")
        files = {}
        for file in sorted(folder.iterdir()):
            if file.is_dir() or file.name == IVFPQ_LISTS:
                continue
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
            files[file.name] = file_digest(file)
        text = json.dumps({**self.manifest(), "files": files}, indent=1)
        with open(folder / MANIFEST, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return text

    def _write_vectors(self, target: Path) -> Shards:
        """The ivfpq rows as the shard folder ``target``: hard links to the loaded generation's
        shards (copies where links fail), then the rows added since, :data:`SHARD_ROWS` a shard."""
        assert self._ivfpq is not None
        rows = self._ivfpq.rows
        target.mkdir()
        linked = False
        if rows.shards is not None:
            try:
                for file in rows.shards.files:
                    os.link(file, target / file.name)
                shutil.copyfile(rows.shards.folder / SHARDS_MANIFEST, target / SHARDS_MANIFEST)
                linked = True
            except OSError:  # another file system, or the generation was pruned: copy from the maps
                shutil.rmtree(target)
                target.mkdir()
        about = rows.shards.about if linked and rows.shards is not None else VECTORS_ABOUT
        writer = ShardWriter(target, rows.dim, about=about, resume=linked)
        if not linked:
            for shard in rows.mapped:  # maps opened on load: still readable if their files are gone
                writer.write(shard)
        for block in rows.in_memory:
            for start in range(0, len(block), SHARD_ROWS):
                writer.write(block[start : start + SHARD_ROWS])
        fsync_folder(target)
        return Shards(target)

    @classmethod
    def load(
        cls, path: str | Path, *, encoders: dict[str, str | None] | None = None, backend: str | None = None
    ) -> IndexStorage:
        """Read the current generation of an index folder, its files checked against their
        recorded sizes and checksums; ``encoders`` / ``backend``, when given, must agree with
        its model (:class:`~xmodal.model.EncoderMismatchError` otherwise)."""
        path = Path(path)
        folder = current_generation(path)
        manifest = _read_manifest(folder / MANIFEST)
        if manifest.get("format") != FORMAT:
            raise ValueError(
                f"{path}: unsupported index format {manifest.get('format')!r} (expected {FORMAT}); "
                "build it again with `xmodal index build`"
            )
        _verify(folder, manifest.get("files"))
        model_file = folder / manifest["model"]
        if Path(manifest["model"]).name != manifest["model"]:
            raise ValueError(
                f"{folder / MANIFEST}: the model must be a file of the index folder, got {manifest['model']!r}"
            )
        model = Model.load(model_file, encoders=encoders, backend=backend)
        storage = cls(
            model,
            manifest["modality"],
            manifest["kind"],
            gallery_kind=manifest.get("gallery_kind"),  # absent before any modality: image or text
            caption_modality=manifest.get("caption_modality", "text"),
        )
        ivfpq = manifest["faiss_index"] == "ivfpq"
        try:
            if ivfpq:
                storage._ivfpq = IvfPqIndex.load(folder, Shards(folder / VECTORS))
            else:
                storage.embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            if (folder / "reference.npy").is_file():
                storage.reference = np.load(folder / "reference.npy", allow_pickle=False)
            storage.items = _read_items(folder / "items.parquet")
            if not ivfpq:
                storage._faiss = faiss.read_index(str(folder / "faiss.index"))
        except IvfPqError as error:
            raise ValueError(str(error)) from None
        except (OSError, ValueError, RuntimeError, pa.ArrowException) as error:
            raise ValueError(f"{folder}: a file of the index cannot be read ({error}); build the index again") from None
        storage._rows = {item.id: row for row, item in enumerate(storage.items)}
        storage.faiss_kind = manifest["faiss_index"]
        if storage._ivfpq is not None:
            n_rows, n_indexed = len(storage._ivfpq.rows), len(storage._ivfpq)
        else:
            assert storage._faiss is not None
            n_rows, n_indexed = storage.embeddings.shape[0], storage._faiss.ntotal
        if not len(storage.items) == n_rows == n_indexed == manifest["count"]:
            raise ValueError(
                f"{path}: items, embeddings and FAISS index disagree on the number of rows; rebuild the index"
            )
        return storage


def _failpoint(stage: str) -> None:
    """Die here, as a crash would, when the fault tests ask for this stage of a save."""
    if os.environ.get(FAILPOINT_ENV) == f"index-save:{stage}":
        os.kill(os.getpid(), signal.SIGKILL)


def is_index(path: Path) -> bool:
    """Whether ``path`` is an index folder (either layout)."""
    return (path / CURRENT).is_file() or (path / MANIFEST).is_file()


def current_generation(path: Path) -> Path:
    """The folder of ``path``'s current generation (``path`` itself for the first layout)."""
    pointer = path / CURRENT
    if not pointer.is_file():
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"not an xmodal index: {path / MANIFEST} not found")
        return path
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    folder = path / GENERATIONS / name
    if not GENERATION.fullmatch(name) or not folder.is_dir():
        raise ValueError(
            f"{pointer}: names generation {name[:40]!r}, which is not in {path / GENERATIONS}; build the index again"
        )
    return folder


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, its fields checked: a missing or mistyped one is an error naming it."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"not an xmodal index: {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: not a readable index manifest ({type(error).__name__}: {error})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not an index manifest (a JSON object)")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise ValueError(f"{path}: field {key!r} missing or not a {kind.__name__}; build the index again")
    return manifest


def _verify(folder: Path, files: Any) -> None:
    """Check the generation's files against the sizes and SHA-256 its manifest records."""
    if files is None:
        return  # first layout: nothing recorded
    if not isinstance(files, dict):
        raise ValueError(f"{folder / MANIFEST}: 'files' must map file names to their size and sha256")
    for name, recorded in files.items():
        file = folder / str(name)
        if Path(str(name)).name != name or not file.is_file():
            raise ValueError(f"{file}: missing from the index; build the index again")
        if file_digest(file) != recorded:
            raise ValueError(
                f"{file}: corrupt (its size or checksum differs from the manifest's); build the index again"
            )


def _prune(path: Path, keep: str) -> None:
    """Delete generations older than the previous one, unfinished ones, and first-layout files."""
    generations = path / GENERATIONS
    names = sorted((g.name for g in generations.iterdir() if GENERATION.fullmatch(g.name)), key=lambda n: int(n[1:]))
    current = names.index(keep)
    for name in names[: max(0, current - 1)]:
        shutil.rmtree(generations / name, ignore_errors=True)
    for stale in generations.glob(".g*.tmp"):
        if stale.name != f".{keep}.tmp":
            shutil.rmtree(stale, ignore_errors=True)
    for legacy in ("model.npz", "embeddings.npy", "faiss.index", "items.parquet", "reference.npy"):
        (path / legacy).unlink(missing_ok=True)


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
