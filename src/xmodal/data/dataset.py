"""PairedDataset: items with ids, one or more values per modality, and a split.

Relevance between modalities is derived from item ids: a caption and an image are
a matching pair when they belong to the same item. "Five captions per image" and
"N modalities per item" therefore need no special cases.

Every modality has a *kind*: ``image`` and ``audio`` values are file paths, ``text`` values
are strings, and ``vector`` values are row numbers (as strings) into the dataset's matrix of
precomputed embeddings for that modality (``vectors[modality]``). A modality's kind is
declared, or follows the naming rule: the name itself (``image``, ``text``) or its prefix
before a dot (``text.fr``, ``image.sketch``, ``audio.en``, ``vector.clip``).

Items may carry class **labels**, by key: ``label`` (e.g. a Tux Paint stamp's folder), or
``label.NAME`` for other label sets (``label.species``); an item may miss any of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

KINDS = ("image", "text", "audio", "vector")
LABEL = "label"  # the key of an item's class label; "label.NAME" keys hold other label sets


def is_label_key(key: str) -> bool:
    """Whether ``key`` names a label set: ``label`` or ``label.NAME``."""
    return key == LABEL or (key.startswith(LABEL + ".") and len(key) > len(LABEL) + 1)


def kind_by_name(modality: str) -> str | None:
    """The kind the naming rule gives ``modality`` (``text.fr`` -> ``text``), or None."""
    prefix = modality.split(".", 1)[0]
    return prefix if prefix in KINDS and (prefix == modality or len(modality) > len(prefix) + 1) else None


class DataError(ValueError):
    """Bad input data: a missing file, a malformed line, an unknown split, ..."""


@dataclass(frozen=True)
class Item:
    """One paired example: ``values[modality]`` holds one or more values (paths or texts),
    ``labels[key]`` its class label of each label set it has (``label``, ``label.NAME``)."""

    id: str
    split: str
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Flattened:
    """Every value of one modality, with the index of the item it belongs to."""

    values: list[str]
    item_index: np.ndarray  # int64, one per value: position of its item in the dataset


class PairedDataset:
    """An ordered collection of :class:`Item` with unique ids."""

    def __init__(
        self,
        name: str,
        items: Iterable[Item],
        *,
        kinds: Mapping[str, str] | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
    ):
        self.name = name
        self.items: list[Item] = list(items)
        self.kinds: dict[str, str] = dict(kinds or {})
        self.vectors: dict[str, np.ndarray] = dict(vectors or {})
        for modality, kind in self.kinds.items():
            if kind not in KINDS:
                raise DataError(f"{name}: modality {modality!r} has unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            if (kind == "vector") != (modality in self.vectors):
                raise DataError(f"{name}: modality {modality!r} of kind {kind!r} needs its vectors, and only it")
        seen: dict[str, int] = {}
        for position, item in enumerate(self.items):
            if item.id in seen:
                raise DataError(f"{name}: duplicate item id {item.id!r} (items {seen[item.id]} and {position})")
            seen[item.id] = position

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"PairedDataset({self.name!r}, {len(self)} items, modalities={self.modalities})"

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present in at least one item, in first-seen order."""
        found: dict[str, None] = {}
        for item in self.items:
            found.update(dict.fromkeys(item.values))
        return tuple(found)

    def kind(self, modality: str) -> str:
        """The kind of ``modality``: declared, else by the naming rule (see the module docstring)."""
        kind = self.kinds.get(modality) or kind_by_name(modality)
        if kind is None:
            raise DataError(
                f"{self.name}: modality {modality!r} has no kind; declare it, or name it "
                f"KIND or KIND.NAME with KIND one of {', '.join(KINDS)}"
            )
        return kind

    @property
    def label_keys(self) -> tuple[str, ...]:
        """Label sets held by at least one item, in first-seen order."""
        found: dict[str, None] = {}
        for item in self.items:
            found.update(dict.fromkeys(item.labels))
        return tuple(found)

    def labels(self, key: str = LABEL) -> list[str | None]:
        """The ``key`` label of each item, in item order (None for an item without one);
        :class:`DataError` when no item has one."""
        if key not in self.label_keys:
            held = ", ".join(self.label_keys) or "none"
            raise DataError(f"{self.name}: no item has a {key!r} label (label keys: {held})")
        return [item.labels.get(key) for item in self.items]

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.split for item in self.items))

    def split(self, name: str) -> PairedDataset:
        """The items of split ``name``; an unknown name raises :class:`DataError`."""
        if name not in self.splits:
            raise DataError(f"{self.name}: unknown split {name!r}; available splits: {', '.join(self.splits)}")
        return self._like(f"{self.name}/{name}", (i for i in self.items if i.split == name))

    def subset(self, n: int | None) -> PairedDataset:
        """The first ``n`` items (for quick runs and tests); all of them (``self``) when ``n`` is None."""
        return self if n is None else self._like(f"{self.name}[:{n}]", self.items[:n])

    def sample(self, n: int, seed: int = 0) -> PairedDataset:
        """``n`` items (all if fewer) drawn without replacement with ``seed``, in dataset order."""
        chosen = np.sort(np.random.default_rng(seed).permutation(len(self.items))[:n])
        return self._like(f"{self.name}[sample of {len(chosen)}, seed {seed}]", [self.items[i] for i in chosen])

    def _like(self, name: str, items: Iterable[Item]) -> PairedDataset:
        """Other items, with this dataset's kinds and vectors."""
        return PairedDataset(name, items, kinds=self.kinds, vectors=self.vectors)

    def flatten(self, modality: str) -> Flattened:
        """All values of ``modality`` in item order; items without it are skipped."""
        if modality not in self.modalities:
            raise DataError(f"{self.name}: unknown modality {modality!r}; available: {', '.join(self.modalities)}")
        values: list[str] = []
        index: list[int] = []
        for position, item in enumerate(self.items):
            for value in item.values.get(modality, ()):
                values.append(value)
                index.append(position)
        return Flattened(values, np.asarray(index, dtype=np.int64))


def pair_rows(items_a: np.ndarray, items_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(rows_a, rows_b)`` of every pair of values that share an item.

    ``items_a`` / ``items_b`` are the ``item_index`` arrays of two flattened modalities.
    With 5 captions and 1 image per item this gives the 5 (caption, image) training pairs
    of each item; items missing either modality contribute none.
    """
    order_b = np.argsort(items_b, kind="stable")
    sorted_items = items_b[order_b]
    start = np.searchsorted(sorted_items, items_a, side="left")
    stop = np.searchsorted(sorted_items, items_a, side="right")
    counts = stop - start
    rows_a = np.repeat(np.arange(len(items_a)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows_b = order_b[np.repeat(start, counts) + offsets]
    return rows_a, rows_b
