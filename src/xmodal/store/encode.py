"""Encoding values into shards through an engine: a dataset split of any size, encoded in this
process or across a Ray cluster, written shard by shard (out of core, resumable).

An encoded split is a folder::

    encoding.json       dataset, split, item count, and the encoder and row count of each modality
    <modality>/         the rows of the split's values of that modality, in the dataset's order
                        (:class:`~xmodal.store.shards.Shards`; one shard per ``shard_rows`` values)
    <modality>.items.npy  the item index of each row (the relevance labels, and what pairs rows)

Shard ``i`` of a modality holds values ``i * shard_rows`` onwards, encoded as one task (in
batches of ``batch_size``): the same shards on either engine, so the same rows. An encode that
is stopped goes on from its last whole shard when run again with the same arguments.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xmodal.core.arrays import check_int
from xmodal.core.config import DEFAULT_BACKEND
from xmodal.core.files import atomic_path, read_json, write_text_atomic
from xmodal.data import PairedDataset
from xmodal.data.dataset import pair_rows
from xmodal.encoders import VECTOR_ENCODER, Encoder, EncoderError, get_encoder
from xmodal.store.embeddings import SplitEmbeddings
from xmodal.store.engine import Engine, LocalEngine
from xmodal.store.shards import MANIFEST, ShardError, Shards, ShardWriter, write_shards

SHARD_ROWS = 4096  # values per shard: one task of the engine
ENCODING = "encoding.json"
FORMAT = "xmodal-encoded/1"


def _load_encoder(name: str, backend: str, models_dir: str | None) -> Encoder:
    return get_encoder(name, backend=backend, models_dir=models_dir)


def _encode(batch_size: int, encoder: Encoder, values: list[str]) -> np.ndarray:
    return encoder.encode(values, batch_size=batch_size)


def encode_to_shards(
    encoder: str,
    values: Sequence[str],
    folder: str | Path,
    *,
    engine: Engine | None = None,
    shard_rows: int = SHARD_ROWS,
    batch_size: int = 64,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = False,
) -> Shards:
    """Encode ``values`` with the registry's ``encoder`` into the shard folder ``folder``.

    Each shard of ``shard_rows`` values is one task of ``engine`` (default: this process),
    whose workers build the encoder themselves. A folder that already holds shards of the same
    values, encoder and ``shard_rows`` is continued; one that holds anything else is an error.
    """
    shard_rows = check_int(shard_rows, "shard_rows", minimum=1)
    values = [str(v) for v in values]
    if not values:
        raise ValueError(f"no values to encode into {folder}")
    listing = hashlib.sha256("\0".join(values).encode()).hexdigest()
    about: dict[str, Any] = {"encoder": encoder, "backend": backend, "values": len(values),
                             "values_sha256": listing, "shard_rows": shard_rows}  # fmt: skip
    folder = Path(folder)
    done = 0
    if (folder / MANIFEST).exists():
        existing = Shards(folder)
        if existing.about != about:
            raise ShardError(f"{folder} holds other shards ({existing.about}); choose another folder")
        done = existing.n_shards
    tasks = [values[start : start + shard_rows] for start in range(done * shard_rows, len(values), shard_rows)]
    setup = functools.partial(_load_encoder, encoder, backend, None if models_dir is None else str(models_dir))
    writer: ShardWriter | None = None
    bar = tqdm(total=len(values), initial=done * shard_rows, desc=encoder, unit="value", disable=not progress)
    for rows in (engine or LocalEngine()).map(setup, functools.partial(_encode, batch_size), tasks):
        writer = writer or ShardWriter(folder, np.shape(rows)[1], about=about, resume=True)
        writer.write(rows)
        bar.update(len(rows))
    bar.close()
    return Shards(folder)


def _copy_to_shards(rows: np.ndarray, folder: Path, shard_rows: int) -> Shards:
    """``rows`` (a vector modality's own) written as shards, replacing any earlier copy."""
    about = {"encoder": VECTOR_ENCODER, "values": len(rows), "shard_rows": shard_rows}
    if (folder / MANIFEST).exists():
        shutil.rmtree(folder)
    return write_shards(folder, (rows[i : i + shard_rows] for i in range(0, len(rows), shard_rows)), about=about)


@dataclass
class EncodedSplit:
    """A split encoded into shards: each modality's rows and the item of every row."""

    folder: Path
    about: dict[str, Any]
    shards: dict[str, Shards]
    items: dict[str, np.ndarray]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.shards)

    @property
    def encoders(self) -> dict[str, str]:
        return {m: self.about["modalities"][m]["encoder"] for m in self.shards}

    def check_encoder(self, modality: str, encoder: Encoder) -> None:
        """Refuse ``encoder`` for ``modality`` unless it computes what the rows were encoded with."""
        recorded = self.about["modalities"][modality].get("cache_key")
        if encoder.cache_key != recorded:
            raise EncoderError(
                f"{self.folder}: {modality} was encoded by {self.encoders[modality]!r} as {recorded!r}, "
                f"which is now {encoder.cache_key!r}: encode it again"
            )

    def require(self, *modalities: str) -> None:
        """Refuse modalities the split was not encoded with."""
        for m in modalities:
            if m not in self.shards:
                raise ValueError(f"{self.folder} has no modality {m!r}; it has {', '.join(self.shards)}")

    def pair_rows(self, first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of every pair of a ``first`` and a ``second`` value of the same item (as
        :meth:`~xmodal.store.ModalityEmbeddings.pairs` pairs them)."""
        self.require(first, second)
        return pair_rows(self.items[first], self.items[second])

    def sample(self, first: str, second: str, n_items: int, seed: int = 0) -> SplitEmbeddings:
        """The rows of ``n_items`` items drawn (seeded) from those with both modalities, in
        memory as a :class:`SplitEmbeddings` (``first`` as its text, ``second`` as its image;
        items renumbered from 0): what analyses measure, read without loading the split."""
        self.require(first, second)
        both = np.intersect1d(self.items[first], self.items[second])
        chosen = np.sort(np.random.default_rng(seed).choice(both, size=min(n_items, len(both)), replace=False))
        rows = {m: np.flatnonzero(np.isin(self.items[m], chosen)) for m in (first, second)}
        items = {m: np.searchsorted(chosen, self.items[m][rows[m]]) for m in rows}
        return SplitEmbeddings(
            self.shards[first].take(rows[first], verify=True), self.shards[second].take(rows[second], verify=True),
            items[first], items[second],
        )  # fmt: skip

    @classmethod
    def open(cls, folder: str | Path) -> EncodedSplit:
        """Read an encoded split (its shards memory-mapped, their headers checked)."""
        folder = Path(folder)
        missing = f"{folder} is not an encoded split (no {ENCODING}); write one with `xmodal shard`"
        about = read_json(folder / ENCODING, ShardError, missing)
        if (
            not isinstance(about, dict)
            or about.get("format") != FORMAT
            or not isinstance(about.get("modalities"), dict)
        ):
            raise ShardError(f"{folder / ENCODING} is not an {FORMAT} description")
        shards, items = {}, {}
        for m, entry in about["modalities"].items():
            shards[m] = Shards(folder / m)
            try:
                items[m] = np.load(folder / f"{m}.items.npy", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ShardError(f"{folder / f'{m}.items.npy'} is unreadable: {error}") from None
            if not len(items[m]) == len(shards[m]) == entry.get("rows"):
                raise ShardError(f"{folder}: the rows and items of {m!r} disagree with {ENCODING}; encode it again")
        return cls(folder, about, shards, items)


def is_encoded_split(path: str | Path) -> bool:
    return (Path(path) / ENCODING).is_file()


def encode_split(
    dataset: PairedDataset,
    encoders: Mapping[str, str],
    folder: str | Path,
    *,
    engine: Engine | None = None,
    shard_rows: int = SHARD_ROWS,
    batch_size: int = 64,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = False,
) -> EncodedSplit:
    """Encode each modality of ``dataset`` with its encoder (``{modality: registry name}``)
    into ``folder`` (see the module docstring); ``encoding.json`` is written last, so a folder
    that has it is complete."""
    folder = Path(folder)
    about: dict[str, Any] = {"format": FORMAT, "dataset": dataset.name, "items": len(dataset), "modalities": {}}
    for modality, name in encoders.items():
        encoder = _load_encoder(name, backend, None if models_dir is None else str(models_dir))  # weights load lazily
        kind = dataset.kind(modality)
        if encoder.modality != kind:
            raise EncoderError(
                f"{dataset.name}: modality {modality!r} holds {kind} values, but encoder {name!r} encodes {encoder.modality}"
            )
        flat = dataset.flatten(modality)
        if kind == "vector":  # the dataset's own rows: nothing to encode
            rows = dataset.vectors[modality][np.asarray(flat.values, dtype=np.int64)]
            shards = _copy_to_shards(rows, folder / modality, shard_rows)
        else:
            shards = encode_to_shards(
                name, flat.values, folder / modality, engine=engine, shard_rows=shard_rows, batch_size=batch_size,
                backend=backend, models_dir=models_dir, progress=progress,
            )  # fmt: skip
        with atomic_path(folder / f"{modality}.items.npy", suffix=".npy") as tmp:
            np.save(tmp, np.asarray(flat.item_index, dtype=np.int64), allow_pickle=False)
        about["modalities"][modality] = {"encoder": name, "cache_key": encoder.cache_key, "kind": kind,
                                         "rows": len(shards), "dim": shards.dim}  # fmt: skip
    write_text_atomic(folder / ENCODING, json.dumps(about, indent=1) + "\n")
    return EncodedSplit.open(folder)
