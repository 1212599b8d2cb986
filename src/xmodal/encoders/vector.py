"""Precomputed embeddings: the ``vector`` encoder computes nothing.

A dataset's vector modality already holds its embeddings (the store takes them as they are);
a query of a vector modality is a file holding one embedding (``.npy`` of shape ``(d,)`` or
``(1, d)``, or a text file of ``d`` numbers), which :meth:`VectorEncoder.encode` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmodal.encoders.base import EncoderError

VECTOR_ENCODER = "vector"


class VectorEncoder:
    """The identity on precomputed embeddings (see the module docstring)."""

    name = VECTOR_ENCODER
    modality = "vector"
    cache_key = VECTOR_ENCODER  # the same function whatever the vectors

    def __init__(self, dim: int | None = None):
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise EncoderError("the vector encoder's dimension is that of the vectors it is given")
        return self._dim

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """The vectors held in the files ``values`` (one vector each), float32."""
        rows = [read_vector(value) for value in values]
        dims = {len(row) for row in rows}
        if len(dims) > 1:
            raise EncoderError(f"vector files of different lengths: {sorted(dims)}")
        if self._dim is not None and dims and dims != {self._dim}:
            raise EncoderError(f"vectors of length {dims.pop()}, expected {self._dim}")
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


def read_vector(path: str | Path) -> np.ndarray:
    """One finite vector from a ``.npy`` file (shape ``(d,)`` or ``(1, d)``) or a text file of numbers."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            vector = np.load(path, allow_pickle=False)
        else:
            vector = np.asarray(path.read_text().replace(",", " ").split(), dtype=np.float64)
    except FileNotFoundError:
        raise EncoderError(f"vector file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise EncoderError(f"cannot read a vector from {path}: {error}") from None
    vector = np.asarray(vector, dtype=np.float32)
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1 or vector.size == 0:
        raise EncoderError(f"{path}: expected one vector, got an array of shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise EncoderError(f"{path}: the vector holds NaN or infinite values")
    return vector
