"""Embedding cache on disk, keyed by encoder and content.

One ``.npy`` file (plus a ``.json`` of metadata) per (encoder, ordered inputs): the key
hashes the encoder's ``cache_key`` with every input's content — the text itself, or the
bytes of an image file — so renaming a folder keeps the cache valid and editing an image
invalidates it. A second run over the same data encodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmodal.core.config import default_cache_dir, embeddings_dir
from xmodal.core.files import atomic_path, write_text_atomic
from xmodal.encoders.base import Encoder
from xmodal.encoders.combined import Combination


def content_key(encoder_key: str, values: Sequence[str], modality: str) -> str:
    """SHA-256 over the encoder key and each input's content (file bytes for images)."""
    digest = hashlib.sha256(encoder_key.encode())
    for value in values:
        digest.update(b"\0")
        if modality == "image":
            try:
                digest.update(Path(value).read_bytes())
            except OSError as exc:
                raise FileNotFoundError(f"cannot read image file {value}: {exc.strerror}") from exc
        else:
            digest.update(value.encode())
    return digest.hexdigest()


class EmbeddingStore:
    """Computes embeddings through an :class:`Encoder`, caching them under ``root/embeddings``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def embed(
        self,
        encoder: Encoder,
        values: Sequence[str],
        *,
        label: str = "",
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings of ``values`` (float32, one row each), from the cache when present.

        ``label`` (e.g. ``"flickr8k/train/text"``) is stored in the metadata for people.
        """
        values = [str(v) for v in values]
        if isinstance(encoder, Combination):  # cache each part on its own
            return encoder.combine(
                [self.embed(p, values, label=label, batch_size=batch_size, progress=progress) for p in encoder.parts]
            )
        key = content_key(encoder.cache_key, values, encoder.modality)
        path = embeddings_dir(self.root) / _safe(encoder.name) / f"{key[:32]}.npy"
        if path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(values):
                self.hits += 1
                return cached
        self.misses += 1
        started = time.perf_counter()
        out = encoder.encode(values, batch_size=batch_size, progress=progress)
        meta = {
            "encoder": encoder.name,
            "cache_key": encoder.cache_key,
            "modality": encoder.modality,
            "label": label,
            "rows": len(values),
            "dim": encoder.dim,
            "seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        _atomic_save(path, out, meta)
        return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _atomic_save(path: Path, array: np.ndarray, meta: dict[str, object]) -> None:
    """The metadata, then the array (whose presence makes a cache hit), each atomically."""
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1))
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)
