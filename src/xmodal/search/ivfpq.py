"""IVF-PQ indexes beyond memory: compressed codes on disk, exact re-ranking from memory-mapped rows.

An index folder holds three files (an index generation holds them beside its other files)::

    ivfpq.json      format, parameters, rows and dimension, the rows the quantizers were trained
                    for, the fingerprint of the vectors (their shards' checksums), and the size
                    and SHA-256 of the two files below
    ivfpq.index     FAISS ``IndexIVFPQ`` (inner product; OPQ in front when asked): the coarse
                    centroids, the PQ codebooks, the directory of the inverted lists
    ivfpq.ivfdata   the inverted lists, FAISS ``OnDiskInvertedLists``: each row's PQ code
                    (``m`` bytes at 8 bits) and id (8 bytes), memory-mapped read-only on load

The exact rows stay in a shard folder (:class:`~xmodal.store.shards.Shards`), memory-mapped and
read only to re-rank candidates; rows are unit vectors (inner product = cosine).

**Build** (:meth:`IvfPqIndex.build`), in bounded memory: the quantizers are trained on a seeded
sample of ``train_rows`` rows; the rows are then encoded block by block (:data:`BLOCK_ROWS`) into
parts of at most :data:`PART_ROWS` codes, each written to disk when full; the parts' lists are
merged into one on-disk file. Everything is written in a temporary folder renamed into place.
Memory: the sample, one block, one part's codes, and what the page cache lends.

**Search** (:meth:`IvfPqIndex.search`): the ``nprobe`` nearest lists are scanned with the PQ
codes for the ``rerank`` best candidates by approximate score; their rows are read from the
memory maps and scored exactly; the best ``k`` are returned with their exact inner products
(ties: the lower id first). A query whose probed lists hold fewer than ``k`` rows is searched
again over every list, so ``k <= rows`` results always come back.

**Adding rows** (:meth:`IvfPqIndex.add`): new rows are encoded with the trained quantizers while
the collection holds at most :data:`GROWTH` times the rows they were trained for; past that,
the index is trained again on all rows with the parameters of :func:`choose_params`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from xmodal.core.arrays import check_embeddings, check_int
from xmodal.core.files import atomic_folder, file_digest, read_json, write_text_atomic
from xmodal.store.shards import Shards

FORMAT = "xmodal-ivfpq/1"
INFO, INDEX, LISTS = "ivfpq.json", "ivfpq.index", "ivfpq.ivfdata"
MIN_PER_LIST = 39  # FAISS's least training rows per centroid
TRAIN_PER_LIST = 64  # training rows per coarse list
TRAIN_MIN = 16_384  # at least this many training rows (8-bit codebooks want 39 x 256)
NPROBE_SHARE, NPROBE_MIN = 128, 16  # nprobe: 1/128 of the lists, at least 16
RERANK = 256  # candidates re-ranked exactly
GROWTH = 2  # add() trains again once the rows outnumber twice those the quantizers were trained for
OPQ_ITERATIONS = 25  # alternations of the OPQ rotation and codebooks (FAISS's default, 50, doubles the time)
BLOCK_ROWS = 1 << 16  # rows read and encoded at a time
PART_ROWS = 1 << 20  # codes held in memory before a part is written to disk (build)


class IvfPqError(ValueError):
    """An IVF-PQ index folder that is missing, damaged, or not for these vectors."""


@dataclass(frozen=True)
class IvfPqParams:
    """How an IVF-PQ index is built and searched (:func:`choose_params` gives the rule).

    ``n_lists`` coarse lists; ``m`` sub-quantizers of ``bits`` bits (codes of ``m * bits / 8``
    bytes); ``opq``: a learned rotation before the PQ; ``train_rows``: rows sampled to train;
    ``nprobe`` lists scanned and ``rerank`` candidates re-scored exactly, by default, per query.
    """

    n_lists: int
    m: int
    train_rows: int
    nprobe: int
    rerank: int
    bits: int = 8
    opq: bool = False

    def __post_init__(self) -> None:
        for spec in fields(self):
            if spec.name != "opq":
                check_int(getattr(self, spec.name), spec.name, minimum=1)
        if self.bits > 16:
            raise ValueError(f"bits must be in 1..16, got {self.bits}")
        if not isinstance(self.opq, bool):
            raise ValueError(f"opq must be True or False, got {self.opq!r}")

    def check(self, dim: int) -> None:
        """Refuse parameters that cannot index ``dim``-d rows."""
        if dim % self.m:
            raise ValueError(f"m={self.m} sub-quantizers must divide the dimension {dim}")
        if self.opq and self.bits != 8:
            raise ValueError("OPQ needs 8-bit codes")


def choose_params(n: int, dim: int, *, opq: bool = False) -> IvfPqParams:
    """The parameters for ``n`` rows of dimension ``dim`` (the rule, measured with
    ``benchmarks/ivfpq.py``):

    - ``n_lists``: the power of two nearest ``4·√n`` (in log scale), at most ``n / 39`` so that
      every list has 39 training rows (1 list below 78 rows); 8,192 at 5M rows;
    - ``train_rows``: ``64 · n_lists``, at least 16,384, at most ``n``;
    - ``m``: ``dim / 4`` (4 dimensions per sub-quantizer: 64-byte codes for 256-d rows, 1/16 of
      the float32 row), or the largest divisor of ``dim`` below that;
    - ``bits``: 8, fewer below 9,984 rows (``2^bits · 39 <= n``: every codebook centroid has 39
      training rows; 1 at least); ``opq`` only with 8 bits;
    - ``nprobe``: ``n_lists / 128``, at least 16 (below 16 lists, every list), at most
      ``n_lists``: 64 at 5M rows. Measured on 5M × 256 clustered unit rows (8,192 lists, 256
      re-ranked): recall@10 0.971 (nprobe 8), 0.995 (16), 0.998 (32), 0.999 (64), 0.999 (128);
      on 1M (4,096 lists): 0.979 (8), 0.999 (16), 1.000 (32). 1/128 keeps a margin for
      collections harder than the synthetic mixture, at 424 queries/s one at a time on 2 cores
      (645 at 1/256);
    - ``rerank``: 256 candidates re-scored exactly. At 5M rows and nprobe 64: recall@10 0.973
      (64 re-ranked), 0.999 (256), 1.000 (1,024, at 2/3 of the speed).
    """
    n = check_int(n, "n", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    near = 2 ** round(math.log2(4 * math.sqrt(n)))
    n_lists = max(1, min(near, 2 ** math.floor(math.log2(max(1, n // MIN_PER_LIST)))))
    train_rows = min(n, max(TRAIN_PER_LIST * n_lists, TRAIN_MIN))
    m = max(d for d in range(1, max(1, dim // 4) + 1) if dim % d == 0)
    bits = int(min(8, max(1, math.floor(math.log2(max(2, n // MIN_PER_LIST))))))
    nprobe = min(n_lists, max(NPROBE_MIN, n_lists // NPROBE_SHARE))
    return IvfPqParams(n_lists, m, train_rows, nprobe, RERANK, bits=bits, opq=opq and bits == 8)


class RowSource:
    """Rows by id: a shard folder's rows (each shard memory-mapped once), then rows held in
    memory (added since), as one sequence of ``dim``-d float32 rows."""

    def __init__(self, dim: int, shards: Shards | None = None):
        self.dim = check_int(dim, "dim", minimum=1)
        self.shards = shards
        if shards is not None and shards.dim != dim:
            raise ValueError(f"{shards.folder} holds {shards.dim}-d rows, not {dim}-d")
        self._parts: list[np.ndarray] = [shards.shard(i) for i in range(shards.n_shards)] if shards else []
        self.n_mapped = len(self._parts)
        self._offsets = np.concatenate([[0], np.cumsum([len(p) for p in self._parts], dtype=np.int64)])

    @classmethod
    def of(cls, rows: Shards | np.ndarray) -> RowSource:
        """The rows of a shard folder, or of an array (not copied)."""
        if isinstance(rows, Shards):
            return cls(rows.dim, rows)
        rows = check_embeddings(rows, "rows")
        source = cls(rows.shape[1])
        source.append(rows)
        return source

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def mapped(self) -> list[np.ndarray]:
        """The shards' rows, memory-mapped (open since this source was made), in order."""
        return self._parts[: self.n_mapped]

    @property
    def in_memory(self) -> list[np.ndarray]:
        """The rows held in memory (after the mapped shards), in order."""
        return self._parts[self.n_mapped :]

    def append(self, rows: np.ndarray) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"rows of shape {rows.shape} cannot join {self.dim}-d rows")
        self._parts.append(np.ascontiguousarray(rows, dtype=np.float32))
        self._offsets = np.append(self._offsets, self._offsets[-1] + len(rows))

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids`` in their order (read from each part in ascending order)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        out = np.empty((len(ids), self.dim), np.float32)
        if not len(ids):
            return out
        if ids.min() < 0 or ids.max() >= len(self):
            raise ValueError(f"row ids must be in 0..{len(self) - 1}, got {ids.min()}..{ids.max()}")
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]
        bounds = np.searchsorted(ordered, self._offsets)
        for part, rows in enumerate(self._parts):
            lo, hi = bounds[part], bounds[part + 1]
            if hi > lo:
                out[order[lo:hi]] = rows[ordered[lo:hi] - self._offsets[part]]
        return out

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` rows drawn without replacement (all if fewer), in id order; seeded."""
        n = min(n, len(self))
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False)))

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """``(first id, block)`` over all rows in order (the shards' checksums checked as they
        are read)."""
        if self.shards is not None:
            yield from self.shards.batches(rows)
        for part, array in enumerate(self.in_memory, start=self.n_mapped):
            for lo in range(0, len(array), rows):
                yield int(self._offsets[part]) + lo, array[lo : lo + rows]

    def to_array(self) -> np.ndarray:
        """All rows in memory."""
        if not self._parts:
            return np.zeros((0, self.dim), np.float32)
        if len(self._parts) == 1 and self.n_mapped == 0:
            return self._parts[0]
        return np.concatenate([np.asarray(p) for p in self._parts])


class IvfPqIndex:
    """An IVF-PQ index over the rows of a :class:`RowSource`, searched with exact re-ranking
    (see the module docstring). Build with :meth:`build` (out of core, to a folder) or
    :meth:`from_rows` (in memory); open with :meth:`load`; persist with :meth:`write`."""

    def __init__(self, trained: np.ndarray, params: IvfPqParams, rows: RowSource, *, trained_for: int, seed: int = 0):
        self.params = params
        self.rows = rows
        self.trained_for = trained_for
        self.seed = seed
        self.timings: dict[str, float] = {}
        self._trained = trained  # the trained index with no rows, serialised: new parts are copies
        self._parts: list[Any] = []  # FAISS indexes with the same quantizers, disjoint global ids
        self._in_memory: Any = None  # the part new rows go to (None: a new one is made)

    def __len__(self) -> int:
        return int(sum(part.ntotal for part in self._parts))

    @property
    def dim(self) -> int:
        return self.rows.dim

    # -- building -----------------------------------------------------------------
    @classmethod
    def from_rows(
        cls, rows: RowSource | Shards | np.ndarray, params: IvfPqParams | None = None, *, seed: int = 0
    ) -> IvfPqIndex:
        """An index of ``rows`` with its codes in memory (trained on a sample, then filled)."""
        source = rows if isinstance(rows, RowSource) else RowSource.of(rows)
        index = cls._trained_on(source, params, seed)
        index._fill(None)
        return index

    @classmethod
    def build(
        cls, vectors: Shards, folder: str | Path, params: IvfPqParams | None = None, *, seed: int = 0
    ) -> IvfPqIndex:
        """Build the index of a shard folder's rows in ``folder`` (replaced atomically), in
        bounded memory; returns it loaded from there (``timings`` says how long each step took)."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            index = cls._trained_on(RowSource.of(vectors), params, seed)
            index._fill(tmp)
            started = time.perf_counter()
            index.write(tmp, vectors)
            timings = {**index.timings, "merge_s": time.perf_counter() - started}
            for part in tmp.glob("part-*.index"):
                part.unlink()
            del index
        loaded = cls.load(folder, vectors)
        loaded.timings = timings
        return loaded

    @classmethod
    def _trained_on(cls, rows: RowSource, params: IvfPqParams | None, seed: int) -> IvfPqIndex:
        n = len(rows)
        if n == 0:
            raise ValueError("no rows to index")
        params = params or choose_params(n, rows.dim)
        params.check(rows.dim)
        started = time.perf_counter()
        sample = rows.sample(params.train_rows, seed)
        need = max(params.n_lists, 2**params.bits)
        if len(sample) < need:  # k-means needs a row per centroid: repeat the few there are
            sample = np.resize(sample, (need, rows.dim))
        ivf = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(rows.dim), rows.dim, params.n_lists, params.m, params.bits, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.seed = ivf.pq.cp.seed = seed
        ivf.cp.min_points_per_centroid = ivf.pq.cp.min_points_per_centroid = 1  # the rule sees to the counts
        index: Any = ivf
        if params.opq:
            rotation = faiss.OPQMatrix(rows.dim, params.m)
            rotation.niter = OPQ_ITERATIONS
            index = faiss.IndexPreTransform(rotation, ivf)
        try:
            index.train(sample)
        except RuntimeError as error:
            raise ValueError(f"cannot train IVF-PQ {params} on {len(sample)} rows: {_faiss_message(error)}") from None
        built = cls(faiss.serialize_index(index), params, rows, trained_for=n, seed=seed)
        built.timings["train_s"] = time.perf_counter() - started
        return built

    def _fill(self, spill: Path | None) -> None:
        """Encode every row into parts; with ``spill``, a part is written there (and mapped
        back) whenever it holds :data:`PART_ROWS` codes."""
        started = time.perf_counter()
        part = self._empty()
        for first, block in self.rows.blocks():
            part.add_with_ids(np.ascontiguousarray(block), np.arange(first, first + len(block), dtype=np.int64))
            if spill is not None and part.ntotal >= PART_ROWS:
                self._parts.append(_spilled(part, spill / f"part-{len(self._parts):06d}.index"))
                part = self._empty()
        if part.ntotal or not self._parts:
            self._parts.append(part)
            self._in_memory = part
        self.timings["fill_s"] = time.perf_counter() - started

    def _empty(self) -> Any:
        return faiss.deserialize_index(self._trained)

    def add(self, rows: np.ndarray) -> IvfPqIndex:
        """Append unit ``rows`` (ids ``len(self)..``): encoded with the trained quantizers while
        the index holds at most :data:`GROWTH` times the rows they were trained for, else all
        rows indexed again with :func:`choose_params`. Returns the index to use from now on."""
        rows = check_embeddings(rows, "rows")
        if rows.shape[1] != self.dim:
            raise ValueError(f"the rows are {rows.shape[1]}-d, the index holds {self.dim}-d rows")
        first = len(self.rows)
        self.rows.append(rows)
        if len(self.rows) > GROWTH * self.trained_for:
            params = choose_params(len(self.rows), self.dim, opq=self.params.opq)
            return IvfPqIndex.from_rows(self.rows, params, seed=self.seed)
        if self._in_memory is None:
            self._in_memory = self._empty()
            self._parts.append(self._in_memory)
        self._in_memory.add_with_ids(rows, np.arange(first, first + len(rows), dtype=np.int64))
        return self

    # -- searching ----------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int = 10, nprobe: int | None = None, rerank: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows of highest inner product with each of ``queries`` (unit rows):
        ``(scores float32, ids int64)``, ``(n_queries, k)``, exact scores of the ``rerank`` best
        candidates of the ``nprobe`` nearest lists (defaults: the index's parameters)."""
        queries = check_embeddings(queries, "queries")
        if queries.shape[1] != self.dim:
            raise ValueError(f"the queries are {queries.shape[1]}-d, the index holds {self.dim}-d rows")
        n = len(self)
        k = check_int(k, "k", minimum=1)
        if k > n:
            raise ValueError(f"k must be between 1 and the gallery size {n}, got {k}")
        nprobe = min(check_int(self.params.nprobe if nprobe is None else nprobe, "nprobe", 1), self.params.n_lists)
        depth = min(n, max(k, check_int(self.params.rerank if rerank is None else rerank, "rerank", 1)))
        ids = self._candidates(queries, depth, nprobe)
        short = np.flatnonzero((ids >= 0).sum(axis=1) < k)
        if len(short):  # the probed lists hold fewer than k rows: scan every list
            ids[short] = self._candidates(queries[short], depth, self.params.n_lists)
        return self._rerank(queries, ids, k)

    def _candidates(self, queries: np.ndarray, depth: int, nprobe: int) -> np.ndarray:
        """The ``depth`` best ids by PQ score over all parts (-1: none)."""
        probe: Any = faiss.SearchParametersIVF()
        probe.nprobe = nprobe
        params: Any = probe
        if self.params.opq:  # the IVF behind the OPQ rotation
            params = faiss.SearchParametersPreTransform()
            params.index_params = probe
        found = [part.search(queries, depth, params=params) for part in self._parts if part.ntotal]
        if len(found) == 1:
            return found[0][1]
        scores = np.concatenate([s for s, _ in found], axis=1)
        ids = np.concatenate([i for _, i in found], axis=1)
        scores[ids < 0] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        return np.take_along_axis(ids, best, axis=1)

    def _rerank(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of the candidates ``ids`` (-1: none); the best ``k`` of each row."""
        n_queries, width = ids.shape
        out_scores, out_ids = np.empty((n_queries, k), np.float32), np.empty((n_queries, k), np.int64)
        step = max(1, BLOCK_ROWS // width)
        for lo in range(0, n_queries, step):
            cand = ids[lo : lo + step]
            valid = cand >= 0
            rows = np.zeros((*cand.shape, self.dim), np.float32)
            rows[valid] = self.rows.take(cand[valid])
            scores = np.matmul(rows, queries[lo : lo + step, :, None])[..., 0]
            scores[~valid] = -np.inf
            order = np.lexsort((np.where(valid, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
            out_scores[lo : lo + step] = np.take_along_axis(scores, order, axis=1)
            out_ids[lo : lo + step] = np.take_along_axis(cand, order, axis=1)
        return out_scores, out_ids

    # -- files --------------------------------------------------------------------
    def write(self, folder: str | Path, vectors: Shards) -> None:
        """Write the index files into the existing ``folder`` (the caller renames it into place):
        every part's lists merged into one on-disk file, then the index and ``ivfpq.json``.
        ``vectors`` must hold this index's rows (its fingerprint is recorded)."""
        folder = Path(folder)
        if len(vectors) != len(self) or vectors.dim != self.dim:
            raise ValueError(f"{vectors.folder} holds {len(vectors)} {vectors.dim}-d rows; the index has {len(self)}")
        index = self._empty()
        ivf = faiss.extract_index_ivf(index)
        lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(folder / LISTS))
        sources = faiss.InvertedListsPtrVector()  # type: ignore[attr-defined]
        for part in self._parts:
            sources.push_back(faiss.extract_index_ivf(part).invlists)
        with _quiet_stdout():  # FAISS prints the list file's new size
            total = lists.merge_from_multiple(sources.data(), sources.size(), False)
        index.ntotal = ivf.ntotal = total
        ivf.replace_invlists(lists, True)
        lists.this.disown()  # type: ignore[attr-defined]
        faiss.write_index(index, str(folder / INDEX))
        del index, ivf  # unmaps the lists
        for name in (INDEX, LISTS):
            _fsync(folder / name)
        info = {
            "format": FORMAT,
            "params": asdict(self.params),
            "count": len(self),
            "dim": self.dim,
            "trained_for": self.trained_for,
            "seed": self.seed,
            "vectors": vectors.fingerprint(),
            "files": {name: file_digest(folder / name) for name in (INDEX, LISTS)},
        }
        write_text_atomic(folder / INFO, json.dumps(info, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path, vectors: Shards) -> IvfPqIndex:
        """Open the index in ``folder`` over ``vectors`` (the rows it was built from): the lists
        memory-mapped read-only. Checked: ``ivfpq.index``'s SHA-256, the lists file's size, and
        that the vectors are the ones recorded (count, dimension, shard checksums); the lists'
        and the shards' full checksums are checked by :meth:`verify`."""
        folder = Path(folder)
        info = _read_info(folder / INFO)
        files = info["files"]
        for name in (INDEX, LISTS):
            if not (folder / name).is_file():
                raise IvfPqError(f"{folder / name}: missing from the IVF-PQ index; build the index again")
        if file_digest(folder / INDEX) != files[INDEX]:
            raise IvfPqError(f"{folder / INDEX}: corrupt (its checksum differs from {INFO}); build the index again")
        size = (folder / LISTS).stat().st_size
        if size != files[LISTS]["size"]:
            recorded = files[LISTS]["size"]
            raise IvfPqError(f"{folder / LISTS}: {size} bytes, {INFO} says {recorded}; build the index again")
        if len(vectors) != info["count"] or vectors.dim != info["dim"] or vectors.fingerprint() != info["vectors"]:
            raise IvfPqError(f"{vectors.folder} does not hold the rows the IVF-PQ index in {folder} was built from")
        params = IvfPqParams(**info["params"])
        flags = faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY
        try:
            index = faiss.read_index(str(folder / INDEX), flags)
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)  # type: ignore[arg-type]
            if not isinstance(lists, faiss.OnDiskInvertedLists) or lists.totsize > size:
                raise IvfPqError(f"{folder / INDEX}: not an index of on-disk lists of {size} bytes")
            lists.filename = str(folder / LISTS)
            lists.do_mmap()
            lists.prefetch_nthread = 0  # read through the page cache: FAISS's 32 prefetch threads cost ~1 ms a query
            empty = faiss.read_index(str(folder / INDEX), flags)
        except RuntimeError as error:
            raise IvfPqError(f"{folder}: the IVF-PQ index cannot be read ({_faiss_message(error)})") from None
        ivf = faiss.extract_index_ivf(empty)
        blank = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
        ivf.replace_invlists(blank, True)
        blank.this.disown()  # type: ignore[attr-defined]
        empty.ntotal = ivf.ntotal = 0
        loaded = cls(faiss.serialize_index(empty), params, RowSource.of(vectors), trained_for=info["trained_for"])
        loaded.seed = info["seed"]
        loaded._parts = [index]
        if index.ntotal != info["count"]:
            raise IvfPqError(f"{folder / INDEX}: holds {index.ntotal} rows, {INFO} says {info['count']}")
        return loaded

    def verify(self, folder: str | Path) -> None:
        """Check the full SHA-256 of the lists file in ``folder`` and of every shard (reads all)."""
        folder = Path(folder)
        info = _read_info(folder / INFO)
        if file_digest(folder / LISTS) != info["files"][LISTS]:
            raise IvfPqError(f"{folder / LISTS}: corrupt (its checksum differs from {INFO}); build the index again")
        if self.rows.shards is not None:
            self.rows.shards.verify()


def _spilled(part: Any, path: Path) -> Any:
    """Write ``part`` to ``path`` and map it back (its codes leave memory)."""
    faiss.write_index(part, str(path))
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


def _read_info(path: Path) -> dict[str, Any]:
    info = read_json(path, IvfPqError, f"{path}: missing from the IVF-PQ index; build the index again")
    fields_ok = isinstance(info, dict) and info.get("format") == FORMAT
    fields_ok = fields_ok and all(isinstance(info.get(key), kind) for key, kind in
                                  (("params", dict), ("count", int), ("dim", int), ("trained_for", int),
                                   ("seed", int), ("vectors", str), ("files", dict)))  # fmt: skip
    if not fields_ok or not all(isinstance(info["files"].get(name), dict) for name in (INDEX, LISTS)):
        raise IvfPqError(f"{path}: not an {FORMAT} description; build the index again")
    try:
        IvfPqParams(**info["params"])
    except (TypeError, ValueError) as error:
        raise IvfPqError(f"{path}: bad parameters ({error}); build the index again") from None
    return info


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _faiss_message(error: RuntimeError) -> str:
    """The first line of FAISS's message, without its C++ location."""
    text = str(error).strip().splitlines()
    message = next((line for line in text if line.startswith("Error")), text[0] if text else "")
    return message.split("' failed: ")[-1] if "' failed: " in message else message


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 sent to /dev/null for the block (FAISS writes to C's stdout, which
    would land in the output of a ``--json`` command)."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
