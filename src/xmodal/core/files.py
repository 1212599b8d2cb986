"""Atomic writes: a file (or a folder) appears whole under its name, or not at all; locks for
writers; checksums of what was written.

Each writer writes into a temporary sibling, flushes it to disk, then renames it over the
target (``os.replace``, atomic on POSIX within one file system). A crash leaves the old file
or no file, never a half-written one, and readers never see a partial write.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed onto ``path`` when the block succeeds.

    ``suffix`` is kept at the end of the temporary name (``np.save`` and ``np.savez`` add
    ``.npy`` / ``.npz`` to names without it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "w") -> Path:
    """Write ``path`` atomically with ``write(handle)`` (``mode`` ``"w"`` text UTF-8, ``"wb"`` bytes)."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        write(handle)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path``'s content with ``text`` (UTF-8) atomically."""
    return write_atomic(path, lambda handle: handle.write(text))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary sibling folder to fill; it replaces ``path`` when the block succeeds.

    An existing ``path`` is moved aside, the new folder renamed in, then the old one deleted:
    at every moment ``path`` is either the complete old folder or the complete new one, but
    for the instant between the two renames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_held: dict[Path, int] = {}  # locks this process holds, by folder, with their depth
_held_guard = threading.Lock()
LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the existing ``folder`` (``flock`` on ``folder/.lock``) for the block: one
    writer at a time across processes; re-entrant within a process (a nested block of the same
    folder does not wait for itself). The lock goes with the process if it dies."""
    folder = Path(folder).resolve()
    with _held_guard:
        depth = _held.get(folder, 0)
        _held[folder] = depth + 1
    try:
        if depth:
            yield
            return
        with open(folder / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        with _held_guard:
            _held[folder] -= 1
            if not _held[folder]:
                del _held[folder]


def read_json(path: str | Path, error: Callable[[str], Exception], missing: str) -> Any:
    """The JSON value in ``path`` (UTF-8). A missing file raises ``error(missing)``; one that
    cannot be read or parsed, ``error("PATH is unreadable: WHY")``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as problem:
        raise error(f"{path} is unreadable: {problem}") from None


def file_digest(path: str | Path) -> dict[str, int | str]:
    """``{"size": bytes, "sha256": hex}`` of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def fsync_folder(folder: str | Path) -> None:
    """Flush ``folder``'s entries (renames into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
