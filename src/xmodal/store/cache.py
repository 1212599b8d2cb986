"""Embedding cache on disk, keyed per item by encoder and content.

Every value (a text, or an image file) is keyed by the SHA-256 of the encoder's ``cache_key``
and the value's content (the text itself, or the bytes of the file), so renaming a folder
keeps the cache valid, editing an image invalidates its own row only, and a changed dataset
or split re-encodes only what is new. Layout, one folder per encoder function::

    <cache>/embeddings/<encoder name>/<hash of its cache_key>/
        encoder.json           name, cache key, modality, dimension (for people)
        <chunk>.npz            ``keys`` (n x 32 bytes) and ``rows`` (n x dim float32)

Values missing from the cache are encoded in chunks of :data:`CHUNK_ROWS`, each written
atomically as soon as it is done: an encode that is killed resumes after the last whole
chunk. Identical values are encoded once. Each chunk records the SHA-256 of its keys and rows,
checked when its rows are read: a chunk that is unreadable or whose checksum differs is
reported by path (a warning of the ``xmodal`` logger), moved aside as ``*.corrupt``, and its
values are encoded again. A cache file written before per-item keys (one
``.npy`` per ordered list of values) still serves exactly that list, row for row, so figures
computed from it do not move (an encoder's output for a value can differ in the last float
bits with the other values of its batch); it is only read, never written.

Hashing every file of a dataset on each run costs more than reading its rows, so the keys of
a list of files are remembered (``<cache>/file-keys/``, one ``.npz`` per encoder and list of
paths) with a digest of every file's size, modification and change times (ns), inode and
device, and reused while that digest is unchanged. Any write to a file, or replacing it,
gives it a new change time, which no tool can set back (unlike the modification time); keys
are only remembered when every file's change time is at least :data:`RACY_NS` older than the
moment they were read, so a later write cannot share that time stamp. A remembered list that
is unreadable or fails its checksum is hashed again and rewritten. Chunks are still checked
against their checksum on every read (their cost is small next to the hashing of files).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xmodal.core.config import default_cache_dir, embeddings_dir
from xmodal.core.files import atomic_path, write_text_atomic
from xmodal.encoders.base import Encoder
from xmodal.encoders.combined import Combination

CHUNK_ROWS = 4096  # values encoded (and written) at a time: the unit an interrupted encode resumes from
KEY_BYTES = 32
log = logging.getLogger("xmodal")
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # what np.load raises on damage
FILE_KEYS = "file-keys"  # under the cache root: the remembered keys of lists of files
RACY_NS = 2_000_000_000  # files changed more recently than this are hashed but not remembered


class CorruptChunk(Exception):
    """A chunk's rows failed their checksum (it has been moved aside)."""


def item_keys(encoder_key: str, values: Sequence[str], modality: str) -> tuple[list[bytes], str]:
    """One SHA-256 digest per value, over the encoder key and the value's content (the bytes
    of the file for images); and the digest of the whole ordered list (the key of the
    one-file caches written before per-item keys)."""
    prefix = hashlib.sha256(encoder_key.encode())
    whole = prefix.copy()
    keys = []
    for value in values:
        content = _content(value, modality)
        digest = prefix.copy()
        digest.update(content)
        keys.append(digest.digest())
        whole.update(b"\0")
        whole.update(content)
    return keys, whole.hexdigest()


FILE_MODALITIES = ("image", "audio")  # values are paths: keyed by the file's bytes


def _content(value: str, modality: str) -> bytes:
    if modality not in FILE_MODALITIES:
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {modality} file {value}: {exc.strerror}") from exc


class EmbeddingStore:
    """Computes embeddings through an :class:`Encoder`, caching each value's row under
    ``root/embeddings``. ``hits`` and ``misses`` count values served from the cache and
    values encoded."""

    def __init__(self, root: str | Path | None = None, chunk_rows: int = CHUNK_ROWS):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.chunk_rows = chunk_rows
        self.hits = 0
        self.misses = 0
        self._indexes: dict[Path, _ChunkIndex] = {}

    def embed(
        self,
        encoder: Encoder,
        values: Sequence[str],
        *,
        label: str = "",
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings of ``values`` (float32, one row each), from the cache where present.

        ``label`` (e.g. ``"flickr8k/train/text"``) is stored with each new chunk, for people.
        """
        values = [str(v) for v in values]
        if isinstance(encoder, Combination):  # cache each part on its own
            return encoder.combine(
                [self.embed(p, values, label=label, batch_size=batch_size, progress=progress) for p in encoder.parts]
            )
        if not values:
            return np.zeros((0, encoder.dim), np.float32)
        if encoder.modality in FILE_MODALITIES:
            keys, whole = _file_keys(self.root / FILE_KEYS, encoder.cache_key, values, encoder.modality)
        else:
            keys, whole = item_keys(encoder.cache_key, values, encoder.modality)
        legacy = _legacy_rows(embeddings_dir(self.root) / _safe(encoder.name) / f"{whole[:32]}.npy", len(values))
        if legacy is not None:
            self.hits += len(values)
            return legacy
        index = self._index(encoder)
        encoded = self._encode_missing(index, encoder, values, keys, label, batch_size, progress)
        self.hits += len(values) - encoded
        self.misses += encoded
        while True:
            try:
                return index.gather(keys)
            except CorruptChunk:  # moved aside and forgotten: its values are missing again
                again = self._encode_missing(index, encoder, values, keys, label, batch_size, progress)
                self.hits -= again
                self.misses += again

    def _encode_missing(
        self,
        index: _ChunkIndex,
        encoder: Encoder,
        values: list[str],
        keys: list[bytes],
        label: str,
        batch_size: int,
        progress: bool,
    ) -> int:
        """Encode, in chunks written as they are done, the values whose keys ``index`` lacks;
        returns how many values that was (each distinct value once)."""
        missing = list(dict.fromkeys(k for k in keys if k not in index.rows))  # each new value once
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # first position of each key
            bar = tqdm(total=len(missing), desc=encoder.name, unit="value", disable=not progress)
            for start in range(0, len(missing), self.chunk_rows):
                chunk = missing[start : start + self.chunk_rows]
                started = time.perf_counter()
                rows = encoder.encode([values[first[k]] for k in chunk], batch_size=batch_size)
                index.add(chunk, rows, {"label": label, "seconds": round(time.perf_counter() - started, 3)})
                bar.update(len(chunk))
            bar.close()
        return len(missing)

    def _index(self, encoder: Encoder) -> _ChunkIndex:
        folder = (
            embeddings_dir(self.root)
            / _safe(encoder.name)
            / hashlib.sha256(encoder.cache_key.encode()).hexdigest()[:16]
        )
        index = self._indexes.get(folder)
        if index is None:
            index = self._indexes[folder] = _ChunkIndex(folder, encoder)
        index.refresh()  # chunks another process wrote since
        return index


class _ChunkIndex:
    """The chunks of one encoder folder: which chunk and row holds each key."""

    def __init__(self, folder: Path, encoder: Encoder):
        self.folder = folder
        self.encoder = encoder
        self.rows: dict[bytes, tuple[Path, int]] = {}
        self._seen: set[str] = set()

    def refresh(self) -> None:
        """Read the keys of chunk files not read yet."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.npz")):
            if path.name not in self._seen:
                try:
                    with np.load(path, allow_pickle=False) as chunk:
                        keys = chunk["keys"]
                except UNREADABLE as error:
                    self.quarantine(path, f"unreadable ({error})")
                    continue
                self.rows.update({bytes(key): (path, row) for row, key in enumerate(keys)})
                self._seen.add(path.name)

    def quarantine(self, path: Path, problem: str) -> None:
        """Move a damaged chunk aside (``*.corrupt``), forget its rows, and say so."""
        moved = path.with_name(path.name + ".corrupt")
        path.replace(moved)
        self.rows = {key: place for key, place in self.rows.items() if place[0] != path}
        self._seen.discard(path.name)
        log.warning("embedding cache file %s is %s: moved to %s; its values are encoded again", path, problem, moved)

    def add(self, keys: list[bytes], rows: np.ndarray, about: dict[str, object]) -> None:
        """Write one chunk (atomically) and index it."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.shape[0] != len(keys):
            raise ValueError(f"{self.encoder.name} returned {rows.shape[0]} rows for {len(keys)} values")
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = {"encoder": self.encoder.name, "cache_key": self.encoder.cache_key,
                    "modality": self.encoder.modality, "dim": int(rows.shape[1])}  # fmt: skip
            write_text_atomic(self.folder / "encoder.json", json.dumps(meta, indent=1))
        about = {**about, "rows": len(keys), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path = self.folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.npz"
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        digest = np.array(_digest(key_array, rows))
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, keys=key_array, rows=rows, about=np.array(json.dumps(about)), sha256=digest)
        self.rows.update({key: (path, row) for row, key in enumerate(keys)})
        self._seen.add(path.name)

    def gather(self, keys: list[bytes]) -> np.ndarray:
        """The rows of ``keys``, in order, reading each chunk once."""
        places = [self.rows[key] for key in keys]
        by_chunk: dict[Path, list[int]] = {}
        for position, (path, _) in enumerate(places):
            by_chunk.setdefault(path, []).append(position)
        out: np.ndarray | None = None
        for path, positions in by_chunk.items():
            rows = self._rows_of(path)
            if out is None:
                out = np.empty((len(keys), rows.shape[1]), np.float32)
            out[positions] = rows[[places[p][1] for p in positions]]
        return out if out is not None else np.zeros((0, 0), np.float32)

    def _rows_of(self, path: Path) -> np.ndarray:
        """A chunk's rows, checked against its recorded SHA-256 (chunks written before checksums
        have none); a damaged chunk is quarantined and :class:`CorruptChunk` raised."""
        try:
            with np.load(path, allow_pickle=False) as chunk:
                rows, keys = chunk["rows"], chunk["keys"]
                recorded = str(chunk["sha256"]) if "sha256" in chunk.files else None
        except UNREADABLE as error:
            self.quarantine(path, f"unreadable ({error})")
            raise CorruptChunk(path) from None
        if recorded is not None and _digest(keys, rows) != recorded:
            self.quarantine(path, "corrupt (its rows do not match their checksum)")
            raise CorruptChunk(path)
        return rows


def _file_keys(folder: Path, encoder_key: str, paths: list[str], modality: str) -> tuple[list[bytes], str]:
    """:func:`item_keys` of files, remembered in ``folder`` while no file has changed (see the
    module docstring)."""
    started = time.time_ns()
    stamps = _stamps(paths)
    if stamps is None:  # a file is missing: item_keys says which, and why
        return item_keys(encoder_key, paths, modality)
    digest, newest = stamps
    listing = hashlib.sha256("\0".join([encoder_key, modality, *paths]).encode()).hexdigest()[:32]
    path = folder / f"{listing}.npz"
    remembered = _read_remembered(path, digest, len(paths))
    if remembered is not None:
        return remembered
    keys, whole = item_keys(encoder_key, paths, modality)
    if started - newest >= RACY_NS:
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        checksum = np.array(_remembered_digest(key_array, whole, digest))
        with contextlib.suppress(OSError), atomic_path(path, suffix=".npz") as tmp:  # a read-only cache is no error
            np.savez(tmp, keys=key_array, whole=np.array(whole), stamps=np.array(digest), sha256=checksum)
    return keys, whole


def _stamps(paths: list[str]) -> tuple[str, int] | None:
    """The digest of every file's size, modification and change times, inode and device, and
    the newest change time (ns); None when a file cannot be read."""
    digest = hashlib.sha256()
    newest = 0
    for value in paths:
        try:
            stat = os.stat(value)
        except OSError:
            return None
        digest.update(f"{stat.st_size} {stat.st_mtime_ns} {stat.st_ctime_ns} {stat.st_ino} {stat.st_dev}\0".encode())
        newest = max(newest, stat.st_ctime_ns)
    return digest.hexdigest(), newest


def _read_remembered(path: Path, stamps: str, n: int) -> tuple[list[bytes], str] | None:
    """The keys and list digest remembered in ``path`` for files of these ``stamps``, if it
    holds them whole (checksum) for ``n`` files; None otherwise."""
    try:
        with np.load(path, allow_pickle=False) as memo:
            keys, whole, recorded, checksum = memo["keys"], str(memo["whole"]), str(memo["stamps"]), str(memo["sha256"])
    except UNREADABLE:  # none yet, or damaged
        return None
    if recorded != stamps or keys.shape != (n, KEY_BYTES) or checksum != _remembered_digest(keys, whole, recorded):
        return None
    return [bytes(key) for key in keys], whole


def _remembered_digest(keys: np.ndarray, whole: str, stamps: str) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(keys).tobytes())
    digest.update(f"{whole}\0{stamps}".encode())
    return digest.hexdigest()


def _digest(keys: np.ndarray, rows: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(keys).tobytes())
    digest.update(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _legacy_rows(path: Path, n: int) -> np.ndarray | None:
    """The rows of a one-file cache written before per-item keys, if ``path`` holds ``n``.

    These files were written without a checksum: the first read records one beside the file
    (``.sha256``) and later reads check it, so a file damaged after that is reported and
    skipped (its values go through the per-item cache), as is an unreadable one."""
    if not path.is_file():
        return None
    data = path.read_bytes()  # read once: hashed, then parsed
    recorded = path.with_name(path.name + ".sha256")
    digest = hashlib.sha256(data).hexdigest()
    if recorded.is_file() and recorded.read_text().strip() != digest:
        log.warning("embedding cache file %s is corrupt (its checksum changed): not used; encoding again", path)
        return None
    try:
        rows = np.load(io.BytesIO(data), allow_pickle=False)
    except UNREADABLE as error:
        log.warning("embedding cache file %s is unreadable (%s): not used; its values are encoded again", path, error)
        return None
    if rows.ndim != 2 or not np.isfinite(rows).all():
        log.warning("embedding cache file %s holds no finite 2-d array: not used; its values are encoded again", path)
        return None
    if not recorded.is_file():
        write_text_atomic(recorded, digest + "\n")  # trusted on first use, checked from now on
    return rows if rows.shape[0] == n else None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
