"""Fitting a model from a dataset: the one path that ``xmodal fit``, the benchmarks and the
analysis share, so they train the same way.

The training split gives the row-paired training embeddings and the groups (the item of each
row); trained aligners also get the first pair of every item of the dev split as validation
(when the dataset has one; otherwise they hold out a seeded share of the training items
themselves) and any extra views of the training images. Closed-form aligners need none of
those, so none is encoded for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.align import Aligner
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_CSLS_K, DEFAULT_METRIC
from xmodal.data import PairedDataset
from xmodal.encoders import Encoder
from xmodal.model.artifact import Model, route
from xmodal.model.selection import DEFAULT_FOLDS, cross_validate, small_data_warning
from xmodal.retrieval.rerank import BRIDGE, QueryBridge, group_means
from xmodal.store import (
    EmbeddingStore,
    EncoderLike,
    ModalityEmbeddings,
    SplitEmbeddings,
    embed_modalities,
    embed_split,
    resolve_encoder,
)

Embeddings = dict[str, np.ndarray]


@dataclass
class TrainingSet:
    """The arguments of :meth:`Aligner.fit`, built from embedded splits."""

    embeddings: Embeddings
    groups: np.ndarray | None = None
    present: dict[str, np.ndarray] | None = None
    validation: Embeddings | None = None
    views: list[Embeddings] = field(default_factory=list)

    @classmethod
    def from_pairs(
        cls, train: SplitEmbeddings, dev: SplitEmbeddings | None = None, views: Sequence[SplitEmbeddings] = ()
    ) -> TrainingSet:
        """Every (caption, image) pair of ``train``, grouped by item; one pair per item of ``dev``
        as validation; ``views`` are embeddings of the same split with other image views."""
        return cls(
            train.training_pairs(),
            train.pair_items(),
            validation=None if dev is None else dev.first_pairs(),
            views=[v.training_pairs() for v in views],
        )

    @classmethod
    def from_modalities(cls, train: ModalityEmbeddings, dev: ModalityEmbeddings | None = None) -> TrainingSet:
        """One row per slot of every item with two or more modalities (absent values masked);
        the first values of each complete ``dev`` item as validation."""
        arrays, present, groups = train.training_table()
        return cls(arrays, groups, present, validation=None if dev is None else dev.first_values())

    @classmethod
    def with_unpaired(
        cls, pairs: Embeddings, groups: np.ndarray, values: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ) -> TrainingSet:
        """The rows of ``pairs`` (``groups``: the item of each), then every value of each
        modality alone (``values``: ``{modality: (embeddings, item of each row)}``, paired or
        not), the other modalities masked: for aligners that learn from unpaired values too."""
        arrays = {m: [x] for m, x in pairs.items()}
        present = {m: [np.ones(len(groups), dtype=bool)] for m in pairs}
        for modality, (x, _) in values.items():
            for m in pairs:
                alone = m == modality
                arrays[m].append(x if alone else np.zeros((len(x), pairs[m].shape[1]), dtype=pairs[m].dtype))
                present[m].append(np.full(len(x), alone))
        return cls(
            {m: np.concatenate(a) for m, a in arrays.items()},
            np.concatenate([groups, *(items for _, items in values.values())]),
            {m: np.concatenate(p) for m, p in present.items()},
        )

    @property
    def n_pairs(self) -> int:
        """Rows with every modality."""
        return self.n_rows if self.present is None else int(np.logical_and.reduce(list(self.present.values())).sum())

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.embeddings.values())))

    @property
    def dims(self) -> dict[str, int]:
        return {m: x.shape[1] for m, x in self.embeddings.items()}

    def fit(self, aligner: Aligner) -> Aligner:
        """``aligner`` fitted on this set (returns it)."""
        return aligner.fit(
            self.embeddings, groups=self.groups, present=self.present, validation=self.validation, views=self.views
        )


def pair_training_set(
    dataset: PairedDataset,
    store: EmbeddingStore,
    text_encoder: EncoderLike,
    image_encoder: EncoderLike,
    *,
    iterative: bool,
    split: str = "train",
    dev_split: str = "dev",
    image_views: Sequence[EncoderLike] = (),
    limit: int | None = None,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[SplitEmbeddings, TrainingSet]:
    """``(train split embeddings, training set)`` for aligning text and image on ``split``
    (its first ``limit`` items). With ``iterative`` (some aligner to fit is trained), the
    ``dev_split`` items (if the dataset has them) become the validation set and
    ``image_views`` (image encoders of other views) the views."""
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    part = dataset.split(split).subset(limit)
    train = embed_split(part, store, text_encoder, image_encoder, **options)
    if not iterative:
        return train, TrainingSet.from_pairs(train)
    dev = None
    if dev_split in dataset.splits:
        dev = embed_split(dataset.split(dev_split).subset(limit), store, text_encoder, image_encoder, **options)
    views = [embed_split(part, store, text_encoder, view, **options) for view in image_views]
    return train, TrainingSet.from_pairs(train, dev, views)


def modality_training_set(
    dataset: PairedDataset,
    store: EmbeddingStore,
    encoders: Mapping[str, EncoderLike],
    *,
    pairwise: bool,
    split: str = "train",
    dev_split: str = "dev",
    iterative: bool = False,
    limit: int | None = None,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainingSet:
    """The training set of any modalities of ``dataset`` (``encoders``: ``{modality: encoder}``).

    ``pairwise`` (two modalities, a closed-form aligner): every pair of values of the same item,
    as :func:`pair_training_set` makes them for text and image. Otherwise one row per slot of
    every item with two or more of the modalities (:meth:`ModalityEmbeddings.training_table`).
    With ``iterative``, the ``dev_split`` items (if any) are the validation set.
    """
    if pairwise and len(encoders) != 2:
        raise ValueError(f"a pairwise training set has two modalities, got {list(encoders)}")
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    train = embed_modalities(dataset.split(split).subset(limit), store, encoders, **options)
    dev = None
    if iterative and dev_split in dataset.splits:
        dev = embed_modalities(dataset.split(dev_split).subset(limit), store, encoders, **options)
    if not pairwise:
        return TrainingSet.from_modalities(train, dev)
    first, second = encoders
    embeddings, groups = train.pairs(first, second)
    return TrainingSet(embeddings, groups, validation=None if dev is None else dev.first_values([first, second]))


def fit_model(
    dataset: PairedDataset,
    aligner: Aligner,
    store: EmbeddingStore,
    *,
    encoders: Mapping[str, EncoderLike],
    split: str = "train",
    dev_split: str = "dev",
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    metric: str = DEFAULT_METRIC,
    csls_k: int = DEFAULT_CSLS_K,
    auto: bool = False,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    progress: bool = True,
    updatable: bool = False,
    bridge: bool = False,
) -> Model:
    """Fit ``aligner`` on the modalities named by ``encoders`` (``{modality: encoder}``) of
    ``split``; the model records the encoders, the scoring settings and where it was fitted.

    Text and image (the modalities ``text`` and ``image``) are paired as
    :func:`pair_training_set` does; any other two modalities as :func:`modality_training_set`
    does, and three or more take an aligner of N modalities (a head). ``auto`` chooses the
    closed-form aligner's regularisation by ``folds``-fold cross-validation over the training
    items (seeded by ``seed``; :func:`~xmodal.model.selection.cross_validate`), recorded in the
    model's ``about["auto"]``. Fewer than 10 items are refused; items fewer than the embedding
    dimension give a warning in ``about["warnings"]``. ``updatable`` (a closed-form aligner
    fitted from additive statistics) keeps the statistics in the model, so that
    :func:`update_model` can add pairs later without the old ones. ``bridge`` keeps the
    training pairs in the model as a bridge for queries (:func:`fit_bridges`).
    """
    if bridge and updatable:
        raise ValueError("a bridge holds the training pairs as fitted: it cannot go with --updatable")
    if auto and aligner.iterative:
        raise ValueError("--auto chooses the regularisation of closed-form aligners; trained heads stop early instead")
    if updatable and not aligner.statistical:
        raise ValueError(
            f"{type(aligner).__name__} is not fitted from statistics: only least squares, Procrustes and CCA are updatable"
        )
    if len(encoders) < 2:
        raise ValueError(f"fitting aligns two or more modalities; got {list(encoders)}")
    if aligner.n_modalities is not None and len(encoders) != aligner.n_modalities:
        raise ValueError(
            f"{type(aligner).__name__} aligns {aligner.n_modalities} modalities, got {len(encoders)} "
            f"({', '.join(encoders)}): name {aligner.n_modalities}, or use a head (head-linear, ...)"
        )
    built = {m: resolve_encoder(e, backend, models_dir) for m, e in encoders.items()}
    aligner.use_encoders({m: e.name for m, e in built.items()})
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    training = _training_set(dataset, store, aligner, built, split=split, dev_split=dev_split, **options)
    n_items = training.n_rows if training.groups is None else len(np.unique(training.groups))
    warning = None if aligner.unpaired_rows else small_data_warning(n_items, training.dims, auto)
    selection = None
    if auto:
        assert training.groups is not None
        selection = cross_validate(aligner, training.embeddings, training.groups, folds=folds, seed=seed)
    if updatable:
        aligner.partial_fit(training.embeddings)
    else:
        training.fit(aligner)
    validation = "none" if not aligner.iterative else dev_split if training.validation is not None else "held out"
    about: dict[str, Any] = {
        "dataset": dataset.name,
        "split": split,
        "pairs": training.n_pairs if aligner.unpaired_rows else training.n_rows,
        "validation": validation,
    }
    if aligner.unpaired_rows:
        assert training.present is not None
        about["values"] = {m: int(p.sum()) - training.n_pairs for m, p in training.present.items()}
    if warning is not None:
        about["warnings"] = [warning]
    if selection is not None:
        about["auto"] = selection.to_json()
    model = Model.from_encoders(aligner, built, backend=backend, metric=metric, csls_k=csls_k, about=about)
    if bridge:
        model.bridges = fit_bridges(aligner, training)
    return model


def fit_bridges(aligner: Aligner, training: TrainingSet) -> dict[str, QueryBridge]:
    """The training pairs as a bridge for queries of each of the two modalities
    (:class:`~xmodal.retrieval.QueryBridge`, keyed by :func:`~xmodal.model.route`), in the
    space of ``aligner`` (fitted on ``training``): each training value of the query modality
    votes with the mean of its item's values of the other (a caption with its image, an image
    with the mean of its captions); a modality with one value per item (an image repeated for
    each of its captions) counts it once. Settings: :data:`~xmodal.retrieval.rerank.BRIDGE`'s
    ``"t2i"`` for queries of a modality with several values per item (captions), ``"i2t"`` for
    one with a single value."""
    if len(training.embeddings) != 2 or training.present is not None or training.groups is None:
        missing = " with missing values" if training.present is not None else ""
        raise ValueError(
            "a bridge needs the complete pairs of two modalities and the item of each pair "
            f"(got {', '.join(training.embeddings)}{missing})"
        )
    shared = {m: aligner.transform(x, m) for m, x in training.embeddings.items()}
    item = np.unique(training.groups, return_inverse=True)[1].ravel()
    n_items = int(item.max()) + 1
    means = {m: group_means(x, training.groups)[1] for m, x in shared.items()}
    bridges = {}
    for query, other in itertools.permutations(shared):
        rows = _distinct_rows(shared[query], item)
        several = len(rows) > n_items
        rows = np.arange(len(item)) if several else rows
        beta, weight = BRIDGE["t2i" if several else "i2t"]
        bridges[route(query, other)] = QueryBridge(beta, weight).fit(shared[query][rows], means[other][item[rows]])
    return bridges


def _distinct_rows(x: np.ndarray, item: np.ndarray) -> np.ndarray:
    """The rows of ``x`` that are the first of their (item, value), in order."""
    keyed = np.column_stack([item.astype(np.float64), x.astype(np.float64)])
    return np.sort(np.unique(keyed, axis=0, return_index=True)[1])


def update_model(
    model: Model,
    dataset: PairedDataset,
    store: EmbeddingStore,
    *,
    split: str = "train",
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
) -> Model:
    """``model`` (fitted with ``updatable``) with the pairs of ``split`` of ``dataset``, embedded by
    the model's encoders, added to its aligner's statistics and solved again (in place)."""
    aligner = model.aligner
    if not aligner.statistical or not hasattr(aligner, "statistics_"):
        raise ValueError(
            f"the model's {type(aligner).__name__} keeps no statistics to add pairs to: "
            "fit it with `xmodal fit --updatable` (least squares, Procrustes or CCA)"
        )
    built = model.build_encoders(models_dir)
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    training = _training_set(dataset, store, aligner, built, split=split, dev_split="", **options)
    aligner.partial_fit(training.embeddings)
    added = {"dataset": dataset.name, "split": split, "pairs": training.n_rows}
    model.about = {**model.about, "pairs": model.about.get("pairs", 0) + training.n_rows}
    model.about["updates"] = [*model.about.get("updates", []), added]
    return model


def _training_set(
    dataset: PairedDataset,
    store: EmbeddingStore,
    aligner: Aligner,
    built: Mapping[str, Encoder],
    *,
    split: str,
    dev_split: str,
    **options: Any,
) -> TrainingSet:
    """What ``aligner`` is fitted on: text-image pairs as :func:`pair_training_set` makes them,
    any other modalities as :func:`modality_training_set` does."""
    if aligner.unpaired_rows:
        return _unpaired_training_set(dataset, store, built, split=split, **options)
    if set(built) == {"text", "image"}:
        _, training = pair_training_set(
            dataset, store, built["text"], built["image"], iterative=aligner.iterative, split=split,
            dev_split=dev_split, **options,
        )  # fmt: skip
        return training
    return modality_training_set(
        dataset, store, built, pairwise=aligner.n_modalities == 2, split=split, dev_split=dev_split,
        iterative=aligner.iterative, **options,
    )  # fmt: skip


def _unpaired_training_set(
    dataset: PairedDataset, store: EmbeddingStore, built: Mapping[str, Encoder], *, split: str, **options: Any
) -> TrainingSet:
    """Every pair of the two modalities of ``split``, then every value of each alone
    (:meth:`TrainingSet.with_unpaired`): items with one modality count too."""
    if len(built) != 2:
        raise ValueError(f"an aligner of pairs and unpaired values takes two modalities, got {list(built)}")
    part = dataset.split(split)
    if set(built) == {"text", "image"}:
        train = embed_split(part, store, built["text"], built["image"], **options)
        return TrainingSet.with_unpaired(
            train.training_pairs(),
            train.pair_items(),
            {"text": (train.text, train.text_items), "image": (train.image, train.image_items)},
        )
    first, second = built
    embedded = embed_modalities(part, store, built, **options)
    pairs, groups = embedded.pairs(first, second)
    return TrainingSet.with_unpaired(pairs, groups, {m: (embedded.arrays[m], embedded.items[m]) for m in built})
