"""Embeddings out of core: a folder of ``.npy`` shards, written one at a time and memory-mapped
for reading, so a pass over any number of rows holds one block in memory.

Layout::

    <folder>/shards.json    format, dimension, total rows, ``about`` (what the rows are, for
                            resuming and for people), and per shard its file, rows and SHA-256
    <folder>/000000.npy     rows 0 .. n_0 - 1 (float32, C order)
    <folder>/000001.npy     the next rows, and so on

Each shard is written atomically, then ``shards.json`` is rewritten atomically to list it: a
writer that is killed leaves every listed shard whole, and :class:`ShardWriter` with ``resume``
goes on after the last one. Opening checks each listed file's header (shape and dtype) and
size; a streamed pass (:meth:`Shards.batches`) checks each shard's SHA-256 as it reads it, and
:meth:`Shards.verify` checks all of them. A damaged or missing shard is a :class:`ShardError`
naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.arrays import check_embeddings, check_int
from xmodal.core.files import atomic_path, read_json, write_text_atomic

FORMAT = "xmodal-shards/1"
MANIFEST = "shards.json"
BLOCK_ROWS = 32_768  # rows per block of a streamed pass (one block in memory at a time)


class ShardError(ValueError):
    """A shard folder that is missing, damaged, or not what was asked for."""


class Shards:
    """The rows of a shard folder, read through memory maps (nothing is loaded up front)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder)
        self.dim: int = manifest["dim"]
        self.about: dict[str, Any] = manifest.get("about", {})
        self._entries: list[dict[str, Any]] = manifest["shards"]
        for entry in self._entries:
            _check_header(self.folder / entry["file"], entry["rows"], self.dim)
        counts = [entry["rows"] for entry in self._entries]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # first row of each shard, and the end
        self._verified: set[int] = set()  # shards whose checksum was checked

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        return len(self._entries)

    @property
    def files(self) -> list[Path]:
        """The shard files, in row order."""
        return [self.folder / entry["file"] for entry in self._entries]

    def fingerprint(self) -> str:
        """SHA-256 over the dimension and each shard's row count and recorded SHA-256: what the
        rows are, read from the manifest (nothing is hashed)."""
        digest = hashlib.sha256(f"{self.dim}".encode())
        for entry in self._entries:
            digest.update(f"\n{entry['rows']} {entry['sha256']}".encode())
        return digest.hexdigest()

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i``'s rows, memory-mapped read-only."""
        path = self.folder / self._entries[i]["file"]
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ShardError(f"shard {path} is unreadable: {error}") from None

    def batches(self, rows: int = BLOCK_ROWS, *, verify: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)`` over all rows in order, blocks of at most ``rows`` rows that
        never span two shards (copies in memory, float32). With ``verify``, each shard's SHA-256
        is checked as it is read, the first time only."""
        rows = check_int(rows, "rows", minimum=1)
        for i in range(self.n_shards):
            shard = self.shard(i)
            digest = hashlib.sha256() if verify and i not in self._verified else None
            for start in range(0, len(shard), rows):
                block = np.array(shard[start : start + rows])
                if digest is not None:
                    digest.update(block.tobytes())
                    if start + rows >= len(shard):
                        self._check_digest(i, digest.hexdigest())
                yield int(self.offsets[i]) + start, block
            del shard

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop - 1`` (in memory), across shards if need be."""
        if not 0 <= start <= stop <= len(self):
            raise ShardError(f"rows {start}..{stop} are outside {self.folder} ({len(self)} rows)")
        first, last = np.searchsorted(self.offsets, [start, stop], side="right") - 1
        parts = []
        for i in range(int(first), min(int(last), self.n_shards - 1) + 1):
            lo, hi = max(start, self.offsets[i]) - self.offsets[i], min(stop, self.offsets[i + 1]) - self.offsets[i]
            if hi > lo:
                parts.append(np.array(self.shard(i)[lo:hi]))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def take(self, ids: np.ndarray | Sequence[int], *, verify: bool = False) -> np.ndarray:
        """The rows of global row numbers ``ids``, in their order (each shard mapped once).
        With ``verify``, a shard is checked against its SHA-256 the first time it is touched
        (the whole shard is read once)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ShardError(f"row ids must be in 0..{len(self) - 1} for {self.folder}, got {ids.min()}..{ids.max()}")
        out = np.empty((len(ids), self.dim), np.float32)
        owner = np.searchsorted(self.offsets, ids, side="right") - 1
        for i in np.unique(owner):
            if verify and i not in self._verified:
                self._verify_shard(int(i))
            at = np.flatnonzero(owner == i)
            local = ids[at] - self.offsets[i]
            order = np.argsort(local, kind="stable")  # ascending reads of the map
            out[at[order]] = self.shard(int(i))[local[order]]
        return out

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` rows drawn without replacement (all rows if there are fewer), in row order;
        the same ``seed`` gives the same rows."""
        n = min(check_int(n, "n", minimum=1), len(self))
        ids = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self.take(ids)

    def to_array(self) -> np.ndarray:
        """All rows in memory (for sets that fit)."""
        return self.rows(0, len(self))

    def verify(self) -> None:
        """Check every shard's SHA-256 (reads everything)."""
        for i in range(self.n_shards):
            self._verify_shard(i)

    def _verify_shard(self, i: int) -> None:
        digest = hashlib.sha256()
        shard = self.shard(i)
        for start in range(0, len(shard), BLOCK_ROWS):
            digest.update(np.ascontiguousarray(shard[start : start + BLOCK_ROWS]).tobytes())
        self._check_digest(i, digest.hexdigest())

    def _check_digest(self, i: int, digest: str) -> None:
        if digest != self._entries[i]["sha256"]:
            raise ShardError(
                f"shard {self.folder / self._entries[i]['file']} is corrupt: its rows do not match their checksum"
            )
        self._verified.add(i)


class ShardWriter:
    """Writes rows to a shard folder, one shard per :meth:`write`.

    ``about`` (JSON values) says what the rows are. With ``resume``, an existing folder with
    the same ``dim`` and ``about`` is continued after its last listed shard (``rows_written``
    says where); otherwise an existing shard folder is an error (nothing is overwritten).
    """

    def __init__(self, folder: str | Path, dim: int, *, about: Mapping[str, Any] | None = None, resume: bool = False):
        self.folder = Path(folder)
        self.dim = check_int(dim, "dim", minimum=1)
        self.about = dict(about or {})
        self._entries: list[dict[str, Any]] = []
        if (self.folder / MANIFEST).exists():
            if not resume:
                raise ShardError(f"{self.folder} already holds shards; choose another folder (or resume)")
            existing = Shards(self.folder)
            if existing.dim != self.dim or existing.about != json.loads(json.dumps(self.about)):
                raise ShardError(
                    f"{self.folder} holds other rows (dim {existing.dim}, {existing.about}); "
                    f"cannot resume it with dim {self.dim}, {self.about}"
                )
            self._entries = existing._entries
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

    @property
    def rows_written(self) -> int:
        return sum(entry["rows"] for entry in self._entries)

    @property
    def n_shards(self) -> int:
        return len(self._entries)

    def write(self, rows: np.ndarray) -> Path:
        """Write ``rows`` (n x dim, finite) as the next shard; returns its path."""
        rows = check_embeddings(rows, f"rows of shard {self.n_shards} of {self.folder}")
        if rows.shape[1] != self.dim:
            raise ShardError(f"{self.folder} holds {self.dim}-d rows, got {rows.shape[1]}-d")
        path = self.folder / f"{self.n_shards:06d}.npy"
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, rows, allow_pickle=False)
        digest = hashlib.sha256(rows.tobytes()).hexdigest()
        self._entries.append({"file": path.name, "rows": len(rows), "sha256": digest})
        self._write_manifest()
        return path

    def _write_manifest(self) -> None:
        manifest = {"format": FORMAT, "dim": self.dim, "rows": self.rows_written, "about": self.about,
                    "shards": self._entries}  # fmt: skip
        write_text_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def write_shards(folder: str | Path, blocks: Iterator[np.ndarray] | Sequence[np.ndarray], **kwargs: Any) -> Shards:
    """Write each of ``blocks`` (row blocks of one dimension) as a shard of a new folder."""
    writer: ShardWriter | None = None
    for block in blocks:
        if writer is None:
            writer = ShardWriter(folder, np.shape(block)[1], **kwargs)
        writer.write(block)
    if writer is None:
        raise ShardError(f"no rows to write to {folder}")
    return Shards(folder)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    manifest = read_json(path, ShardError, f"{folder} is not a shard folder (no {MANIFEST})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"{path} is not an {FORMAT} manifest")
    shards = manifest.get("shards")
    if not isinstance(manifest.get("dim"), int) or not isinstance(shards, list):
        raise ShardError(f"{path} lacks its dim or shard list")
    for entry in shards:
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("rows"), int)
                and isinstance(entry.get("sha256"), str) and "/" not in entry["file"]):  # fmt: skip
            raise ShardError(f"{path} lists a malformed shard: {entry!r}")
    return manifest


def _check_header(path: Path, rows: int, dim: int) -> None:
    """The file holds a float32 (rows, dim) array and is no shorter than that."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            data_start = handle.tell()
    except FileNotFoundError:
        raise ShardError(f"shard {path} is missing") from None
    except (OSError, ValueError) as error:
        raise ShardError(f"shard {path} is unreadable: {error}") from None
    if shape != (rows, dim) or dtype != np.float32 or fortran:
        raise ShardError(f"shard {path} holds {dtype} {shape}, its manifest says float32 ({rows}, {dim})")
    if path.stat().st_size < data_start + rows * dim * 4:
        raise ShardError(f"shard {path} is truncated")
