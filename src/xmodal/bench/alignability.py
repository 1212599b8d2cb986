"""Which encoders to pair: every candidate text encoder x image encoder scored for alignability
on a small seeded sample of a split's pairs (:mod:`xmodal.analysis.alignability`), before
encoding everything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xmodal.analysis.alignability import SCORES, alignability
from xmodal.core.arrays import check_int
from xmodal.core.config import DEFAULT_BACKEND
from xmodal.data import PairedDataset
from xmodal.store import EmbeddingStore, embed_split


@dataclass(frozen=True)
class EncoderPairScore:
    text: str
    image: str
    scores: dict[str, float]


def score_encoders(
    dataset: PairedDataset,
    store: EmbeddingStore,
    text_encoders: Sequence[str],
    image_encoders: Sequence[str],
    *,
    n_pairs: int = 1000,
    seed: int = 0,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = False,
) -> list[EncoderPairScore]:
    """Every text x image encoder pair scored on the first caption and the image of ``n_pairs``
    sampled items of ``dataset`` (:data:`~xmodal.analysis.alignability.SCORES`), best
    ``fitted R@10`` first."""
    sample = dataset.sample(check_int(n_pairs, "n_pairs", minimum=50), seed)
    results = []
    for text in text_encoders:
        for image in image_encoders:
            split = embed_split(sample, store, text, image, backend=backend, models_dir=models_dir, progress=progress)
            t_rows, i_rows = split.pair_rows(first_only=True)
            results.append(
                EncoderPairScore(text, image, alignability(split.text[t_rows], split.image[i_rows], seed=seed))
            )
    return sorted(results, key=lambda r: -r.scores[SCORES[0]])
