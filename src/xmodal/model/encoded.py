"""A model on a split encoded out of core (:class:`~xmodal.store.EncodedSplit`): fitted from
statistics streamed from its shards, and evaluated with both sides streamed, in bounded memory."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from xmodal.align import Aligner
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_CSLS_K, DEFAULT_METRIC
from xmodal.evaluate import recall_metrics, streamed_ranks
from xmodal.model.artifact import Model
from xmodal.store import EncodedSplit, Engine, resolve_encoder

EVAL_BLOCK_ROWS = 4096  # rows per block of a streamed evaluation (a block of scores is 4096 x 4096 float32)


def fit_encoded(
    encoded: EncodedSplit,
    aligner: Aligner,
    *,
    modalities: Sequence[str] | None = None,
    engine: Engine | None = None,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    metric: str = DEFAULT_METRIC,
    csls_k: int = DEFAULT_CSLS_K,
    updatable: bool = False,
) -> Model:
    """Fit a closed-form ``aligner`` on every pair of values of the same item of two
    ``modalities`` (default: the split's two) of an encoded split, streamed from its shards
    (:meth:`~xmodal.align.Aligner.shard_statistics`; ``engine`` runs the blocks): the pairs
    :func:`fit_model` fits on, in ``O(d^2)`` memory. ``updatable`` keeps the statistics."""
    if not aligner.statistical:
        raise ValueError(
            f"{type(aligner).__name__} is not fitted from statistics: an encoded split fits least squares, "
            "Procrustes and CCA (fit heads on the dataset itself)"
        )
    first, second = _two_modalities(tuple(modalities or encoded.modalities))
    built = {m: resolve_encoder(encoded.encoders[m], backend, models_dir) for m in (first, second)}
    for m, encoder in built.items():
        encoded.check_encoder(m, encoder)
    rows_first, rows_second = encoded.pair_rows(first, second)
    shards = {first: encoded.shards[first], second: encoded.shards[second]}
    statistics = aligner.shard_statistics(shards, {first: rows_first, second: rows_second}, engine=engine)
    aligner.fit_statistics(statistics, keep=updatable)
    about = {"dataset": encoded.about.get("dataset", ""), "encoded": str(encoded.folder), "pairs": statistics.count,
             "validation": "none"}  # fmt: skip
    return Model.from_encoders(aligner, built, backend=backend, metric=metric, csls_k=csls_k, about=about)


def _two_modalities(modalities: tuple[str, ...]) -> tuple[str, str]:
    if len(modalities) != 2:
        raise ValueError(f"a closed-form aligner aligns two modalities; name two of {', '.join(modalities)}")
    return modalities[0], modalities[1]


def evaluate_encoded(model: Model, encoded: EncodedSplit, block_rows: int = EVAL_BLOCK_ROWS) -> dict[str, float]:
    """Recall metrics of ``model`` on an encoded split, with its scoring (CSLS included), every
    ordered pair of its modalities: ``t2i/...`` and ``i2t/...`` for text and image, else
    ``Q->G/...``. The same ranks as the in-memory evaluation (:func:`~xmodal.evaluate.streamed_ranks`)."""
    encoded.require(*model.modalities)
    for m in model.modalities:
        encoded.check_encoder(m, resolve_encoder(model.encoders[m].name, model.backend))

    def mapped(modality: str) -> Iterator[np.ndarray]:
        for _, block in encoded.shards[modality].batches(rows=block_rows):
            yield model.transform(block, modality)

    metrics: dict[str, float] = {}
    for query in model.modalities:
        for gallery in model.modalities:
            if query == gallery:
                continue
            found = streamed_ranks(
                functools.partial(mapped, query), functools.partial(mapped, gallery), encoded.items[query],
                encoded.items[gallery],
                metric=model.metric, csls_k=model.csls_k,
            )  # fmt: skip
            prefix = {("text", "image"): "t2i/", ("image", "text"): "i2t/"}.get(
                (query, gallery), f"{query}->{gallery}/"
            )
            metrics.update({prefix + k: v for k, v in recall_metrics(found).items()})
    return metrics
