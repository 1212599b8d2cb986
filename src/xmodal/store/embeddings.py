"""Embeddings of a dataset split, through the cache, with the relevance labels of each row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.core.config import DEFAULT_BACKEND
from xmodal.data import DataError, PairedDataset
from xmodal.data.dataset import pair_rows
from xmodal.encoders import VECTOR_ENCODER, Encoder, EncoderError, default_encoder, get_encoder
from xmodal.store.cache import EmbeddingStore

EncoderLike = Encoder | str  # an encoder, or its registry name


@dataclass
class SplitEmbeddings:
    """Embeddings of one split with the item index of every row (the relevance labels)."""

    text: np.ndarray
    image: np.ndarray
    text_items: np.ndarray
    image_items: np.ndarray

    def pair_rows(self, first_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(text rows, image rows)`` of every (caption, image) pair of the same item, or with
        ``first_only`` of one pair per item (its first caption)."""
        t_rows, i_rows = pair_rows(self.text_items, self.image_items)
        if first_only:
            _, first = np.unique(self.text_items[t_rows], return_index=True)
            t_rows, i_rows = t_rows[first], i_rows[first]
        return t_rows, i_rows

    def training_pairs(self) -> dict[str, np.ndarray]:
        """Every (caption, image) pair of the same item, row-paired."""
        t_rows, i_rows = self.pair_rows()
        return {"text": self.text[t_rows], "image": self.image[i_rows]}

    def pair_items(self) -> np.ndarray:
        """The item of each row of :meth:`training_pairs` (the ``groups`` of trained heads)."""
        return self.text_items[self.pair_rows()[0]]

    def first_pairs(self) -> dict[str, np.ndarray]:
        """One (first caption, image) pair per item: a validation set for trained heads."""
        t_rows, i_rows = self.pair_rows(first_only=True)
        return {"text": self.text[t_rows], "image": self.image[i_rows]}


def resolve_encoder(
    encoder: EncoderLike, backend: str = DEFAULT_BACKEND, models_dir: str | Path | None = None
) -> Encoder:
    """``encoder`` itself, or the registry's encoder of that name."""
    return get_encoder(encoder, backend=backend, models_dir=models_dir) if isinstance(encoder, str) else encoder


def choose_encoders(
    dataset: PairedDataset, given: Mapping[str, str], modalities: Sequence[str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """``({modality: encoder name}, skipped)``: the encoder of each of ``modalities``, ``given``
    or else the default of its kind (:func:`~xmodal.encoders.default_encoder`).

    ``modalities`` default to every modality of ``dataset``, in its order but images last (so
    that directed presets such as ``lstsq-t2i`` map the other modality onto the images, as they
    map text onto images); with no ``modalities`` named, audio modalities without a given
    encoder are skipped and listed (encoding speech is slow: it is done when asked)."""
    known = dataset.modalities
    for modality in [*given, *(modalities or ())]:
        if modality not in known:
            raise DataError(f"{dataset.name}: unknown modality {modality!r}; it has {', '.join(known)}")
    if modalities:
        unused = sorted(set(given) - set(modalities))
        if unused:
            raise DataError(f"an encoder is given for {unused[0]!r}, which is not among the chosen modalities")
    chosen, skipped = {}, []
    for modality in modalities or sorted(known, key=lambda m: dataset.kind(m) == "image"):
        kind = dataset.kind(modality)
        if modality in given:
            chosen[modality] = given[modality]
        elif kind == "audio" and not modalities:
            skipped.append(modality)
        else:
            chosen[modality] = default_encoder(modality, kind)
    return chosen, skipped


def embed_modality(
    dataset: PairedDataset,
    modality: str,
    encoder: Encoder,
    store: EmbeddingStore,
    *,
    progress: bool = True,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings, item of each row)`` of every value of ``modality``: encoded through the
    cache, or, for a vector modality, the dataset's own vectors (its encoder is ``vector``).
    An encoder of another kind than the modality's is refused."""
    flat = dataset.flatten(modality)
    kind = dataset.kind(modality)
    if encoder.modality != kind:
        raise EncoderError(
            f"{dataset.name}: modality {modality!r} holds {kind} values, but encoder {encoder.name!r} encodes "
            f"{encoder.modality}" + (f"; use the encoder {VECTOR_ENCODER!r}" if kind == "vector" else "")
        )
    if kind == "vector":
        rows = np.asarray(flat.values, dtype=np.int64)
        return np.ascontiguousarray(dataset.vectors[modality][rows], dtype=np.float32), flat.item_index
    label = f"{dataset.name}/{modality}"
    return store.embed(encoder, flat.values, label=label, batch_size=batch_size, progress=progress), flat.item_index


def embed_split(
    dataset: PairedDataset,
    store: EmbeddingStore,
    text_encoder: EncoderLike,
    image_encoder: EncoderLike,
    *,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
    modalities: tuple[str, str] = ("text", "image"),
) -> SplitEmbeddings:
    """Embed the text and image values of ``dataset`` through the cache (encoders given by
    name are built with ``backend`` and ``models_dir``). Another pair of ``modalities`` takes
    the two roles: the first is embedded by ``text_encoder`` into ``text``, the second by
    ``image_encoder`` into ``image``."""
    first, second = modalities
    text, text_items = embed_modality(
        dataset, first, resolve_encoder(text_encoder, backend, models_dir), store, progress=progress
    )
    image, image_items = embed_modality(
        dataset, second, resolve_encoder(image_encoder, backend, models_dir), store, progress=progress
    )
    return SplitEmbeddings(text, image, text_items, image_items)


@dataclass
class ModalityEmbeddings:
    """Embeddings of any number of modalities of one split, with the item of every row."""

    arrays: dict[str, np.ndarray]
    items: dict[str, np.ndarray]  # item index of each row, per modality
    n_items: int

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def complete_items(self, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Items that have every one of ``modalities`` (default: all), ascending."""
        keep = np.ones(self.n_items, dtype=bool)
        for m in modalities or self.modalities:
            keep &= self._counts(m) > 0
        return np.flatnonzero(keep)

    def slot_rows(
        self, modalities: Sequence[str], items: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rows that combine one value of each modality per item: ``(item_of_row, {m: rows})``.

        Item ``i`` gets as many rows ("slots") as its most numerous modality has values; slot
        ``j`` takes value ``j mod count`` of every modality (e.g. the j-th English caption with
        the j-th German one, and the single French sentence in every slot). A modality the
        item lacks gets row ``-1``. ``items`` defaults to every item with at least one value.
        """
        counts = {m: self._counts(m) for m in modalities}
        starts = {m: np.cumsum(c) - c for m, c in counts.items()}
        order = {m: np.argsort(self._items(m), kind="stable") for m in modalities}
        slots = np.max(np.stack(list(counts.values())), axis=0)
        chosen = np.flatnonzero(slots > 0) if items is None else np.asarray(items, dtype=np.int64)
        item_of_row = np.repeat(chosen, slots[chosen])
        slot = np.arange(len(item_of_row)) - np.repeat(np.cumsum(slots[chosen]) - slots[chosen], slots[chosen])
        rows = {}
        for m in modalities:
            count = counts[m][item_of_row]
            position = starts[m][item_of_row] + slot % np.maximum(count, 1)
            rows[m] = np.where(count > 0, order[m][np.minimum(position, len(order[m]) - 1)], -1)
        return item_of_row, rows

    def training_table(
        self, modalities: Sequence[str] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """Row-paired training data for N-modality heads: ``(arrays, present, groups)``.

        One row per slot (see :meth:`slot_rows`) of every item with two or more of the
        ``modalities``; absent values are zero rows with ``present[m]`` False. ``groups`` is
        the item of each row, so a batch holds one slot per item.
        """
        modalities = list(modalities or self.modalities)
        n_present = sum((self._counts(m) > 0).astype(int) for m in modalities)
        item_of_row, rows = self.slot_rows(modalities, np.flatnonzero(n_present >= 2))
        arrays, present = {}, {}
        for m in modalities:
            present[m] = rows[m] >= 0
            arrays[m] = np.where(present[m][:, None], self.arrays[m][np.maximum(rows[m], 0)], 0).astype(np.float32)
        return arrays, present, item_of_row

    def pairs(self, first: str, second: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every pair of a ``first`` and a ``second`` value of the same item, row-paired, and
        the item of each row (as :meth:`SplitEmbeddings.training_pairs` for text and image)."""
        rows_a, rows_b = pair_rows(self._items(first), self._items(second))
        return {first: self.arrays[first][rows_a], second: self.arrays[second][rows_b]}, self.items[first][rows_a]

    def without_pairs(self, first: str, second: str, seed: int = 0) -> ModalityEmbeddings:
        """A copy in which no item has both ``first`` and ``second``: of the items that do, a
        seeded half keep only their ``first`` values and the others only their ``second`` ones
        (to fit ``first`` <-> ``second`` with no pairs of them, through other modalities)."""
        both = self.complete_items([first, second])
        drop_first = np.zeros(self.n_items, dtype=bool)
        drop_first[np.random.default_rng(seed).permutation(both)[: len(both) // 2]] = True
        dropped = {first: drop_first, second: np.isin(np.arange(self.n_items), both) & ~drop_first}
        keep = {m: ~dropped[m][self.items[m]] if m in dropped else slice(None) for m in self.modalities}
        return ModalityEmbeddings(
            {m: x[keep[m]] for m, x in self.arrays.items()},
            {m: i[keep[m]] for m, i in self.items.items()},
            self.n_items,
        )

    def first_values(self, modalities: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The first value of each modality for every item that has them all (validation)."""
        modalities = list(modalities or self.modalities)
        item_of_row, rows = self.slot_rows(modalities, self.complete_items(modalities))
        _, first = np.unique(item_of_row, return_index=True)
        return {m: self.arrays[m][rows[m][first]] for m in modalities}

    def _counts(self, modality: str) -> np.ndarray:
        """Number of values of ``modality`` per item."""
        return np.bincount(self._items(modality), minlength=self.n_items)

    def _items(self, modality: str) -> np.ndarray:
        if modality not in self.arrays:
            raise ValueError(f"no embeddings for modality {modality!r}; have {', '.join(self.arrays)}")
        return self.items[modality]


def embed_modalities(
    dataset: PairedDataset,
    store: EmbeddingStore,
    encoders: Mapping[str, EncoderLike],
    *,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
) -> ModalityEmbeddings:
    """Embed each modality of ``dataset`` with its encoder (``{modality: encoder or name}``)."""
    arrays, items = {}, {}
    for modality, name in encoders.items():
        encoder = resolve_encoder(name, backend, models_dir)
        arrays[modality], items[modality] = embed_modality(dataset, modality, encoder, store, progress=progress)
    return ModalityEmbeddings(arrays, items, len(dataset))
