"""The Encoder protocol: named, single-modality, batched, deterministic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

FINETUNE_METADATA = "xmodal-finetune.json"  # marks a model folder written by `xmodal finetune`


class EncoderError(ValueError):
    """An encoder cannot be built or cannot encode its input."""


@runtime_checkable
class Encoder(Protocol):
    """Turns a batch of values (texts, or image paths) into float32 embeddings."""

    name: str  # registry name, e.g. "minilm"
    modality: str  # "text" or "image"

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    @property
    def cache_key(self) -> str:
        """Identifies the exact function computed, for the embedding cache."""
        ...

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of ``values``, shape ``(len(values), dim)``, float32."""
        ...


def check_texts(values: Sequence[str], encoder: str) -> list[str]:
    """Reject non-strings and empty captions with a message naming the position."""
    texts = list(values)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise EncoderError(f"{encoder}: value {position} is {type(text).__name__}, expected a string")
        if not text.strip():
            raise EncoderError(f"{encoder}: text {position} is empty")
    return texts
