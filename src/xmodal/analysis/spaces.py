"""Shared spaces to analyse: the unaligned embeddings and each fitted aligner's output."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xmodal.align import Aligner
from xmodal.align.presets import make_aligner
from xmodal.model import TrainingSet
from xmodal.store import SplitEmbeddings

UNALIGNED = "none"


@dataclass
class FittedSpace:
    """A named map of both modalities into one space; ``aligner`` None is the unaligned one.
    ``modalities`` are the aligner's names of the two roles (the query side, then the gallery
    side; a fitted model's own modality names)."""

    name: str
    aligner: Aligner | None
    fit_seconds: float = 0.0
    modalities: tuple[str, str] = ("text", "image")

    def apply(self, split: SplitEmbeddings) -> SplitEmbeddings:
        """``split`` with both modalities mapped into this space (same rows and labels)."""
        if self.aligner is None:
            text, image = zero_pad(split.text, split.image)
        else:
            first, second = self.modalities
            text, image = self.aligner.transform(split.text, first), self.aligner.transform(split.image, second)
        return SplitEmbeddings(text, image, split.text_items, split.image_items)


def zero_pad(text: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays with zero columns appended up to the larger dimension: the unaligned
    "shared space" (the identity when dimensions agree), where coordinates of the two
    encoders are compared as they are, so the gap of spaces that never met can be measured."""
    dim = max(text.shape[1], image.shape[1])
    pad = lambda x: np.pad(x, ((0, 0), (0, dim - x.shape[1])))  # noqa: E731
    return pad(text), pad(image)


def fit_spaces(names: Sequence[str], training: TrainingSet) -> list[FittedSpace]:
    """The unaligned space, then each named aligner preset fitted on ``training`` (the path
    ``xmodal fit`` takes: trained heads also get its groups and validation)."""
    spaces = [FittedSpace(UNALIGNED, None)]
    for name in names:
        aligner = make_aligner(name)
        started = time.perf_counter()
        training.fit(aligner)
        spaces.append(FittedSpace(name, aligner, time.perf_counter() - started))
    return spaces
