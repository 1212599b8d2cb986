"""Text encoders: sentence-transformers models loaded from local folders (offline)."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmodal.encoders.base import FINETUNE_METADATA, EncoderError, check_texts

# Never reach for a model hub: every model here comes from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local folder, mean-pooled as the model defines."""

    modality = "text"

    def __init__(self, name: str, path: str | Path):
        path = Path(path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EncoderError(
                f"{name}: {path} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        self.name = name
        self.path = path

    @functools.cached_property
    def model(self):
        """The loaded model (loaded on first use, so cache hits never load weights)."""
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as error:  # transformers and torch raise many types (UnpicklingError, OSError, ...)
            message = str(error).splitlines()[0] if str(error) else ""
            raise EncoderError(
                f"{self.name}: cannot load the model in {self.path}: {type(error).__name__}: {message}"
            ) from None

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @functools.cached_property
    def cache_key(self) -> str:
        """Name, weight file names and sizes, and for a tuned model its tuning record."""
        weights = sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin"))
        digest = hashlib.sha256()
        for file in weights:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
        record = self.path / FINETUNE_METADATA  # rewritten by every tuning run
        if record.is_file():
            digest.update(record.read_bytes())
        return f"{self.name}|st|{digest.hexdigest()[:16]}"

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(values, self.name)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
        return np.ascontiguousarray(out, dtype=np.float32)
