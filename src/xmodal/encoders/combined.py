"""Encoders built from other encoders of one modality; the store caches each part."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.core.arrays import unit_rows
from xmodal.encoders.base import Encoder, EncoderError


class Combination:
    """Shared by the combinators: checks one modality, encodes each part, combines (the
    embedding store caches each part on its own and calls :meth:`combine`)."""

    separator = ""

    def __init__(self, parts: Sequence[Encoder], name: str | None = None):
        modalities = {p.modality for p in parts}
        if len(modalities) != 1:
            raise EncoderError(
                "cannot combine encoders of different modalities: "
                f"{', '.join(f'{p.name} ({p.modality})' for p in parts)}"
            )
        self.parts = list(parts)
        self.name = name or self.separator.join(p.name for p in parts)
        self.modality = modalities.pop()

    @property
    def cache_key(self) -> str:
        return type(self).__name__ + "(" + ",".join(p.cache_key for p in self.parts) + ")"

    def combine(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.combine([p.encode(values, batch_size, progress) for p in self.parts])


class ConcatEncoder(Combination):
    """Concatenation of the L2-normalised embeddings of its parts (name ``a+b``)."""

    separator = "+"

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    def combine(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([unit_rows(b) for b in blocks], axis=1).astype(np.float32)


class MeanEncoder(Combination):
    """Mean of the L2-normalised embeddings of parts of equal dimension (e.g. image views)."""

    def __init__(self, parts: Sequence[Encoder], name: str | None = None):
        super().__init__(parts, name)
        if len({p.dim for p in self.parts}) != 1:
            raise EncoderError(f"{self.name}: parts must share a dimension to be averaged")

    @property
    def dim(self) -> int:
        return self.parts[0].dim

    def combine(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        return np.mean([unit_rows(b) for b in blocks], axis=0).astype(np.float32)
