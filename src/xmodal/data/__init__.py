"""Paired datasets: Flickr8k, Flickr8k + Multi30k, users' own manifests, and image loading."""

from __future__ import annotations

from pathlib import Path

from xmodal.core.config import default_data_root
from xmodal.data.dataset import DataError, Flattened, Item, PairedDataset
from xmodal.data.flickr8k import load_flickr8k
from xmodal.data.images import load_image
from xmodal.data.manifest import MANIFEST_SUFFIXES, load_manifest
from xmodal.data.multi30k import load_flickr8k_multi30k

__all__ = [
    "DataError",
    "Flattened",
    "Item",
    "PairedDataset",
    "default_data_root",
    "load_dataset",
    "load_flickr8k",
    "load_flickr8k_multi30k",
    "load_image",
    "load_manifest",
]


NAMED_DATASETS = {"flickr8k": load_flickr8k, "flickr8k-multi30k": load_flickr8k_multi30k}


def load_dataset(name_or_path: str, data_root: str | Path | None = None) -> PairedDataset:
    """A named dataset (read from ``data_root``), or the path of a ``.jsonl``/``.csv`` manifest."""
    if name_or_path in NAMED_DATASETS:
        return NAMED_DATASETS[name_or_path](data_root)
    if Path(name_or_path).suffix.lower() in MANIFEST_SUFFIXES:
        return load_manifest(name_or_path)
    raise DataError(
        f"unknown dataset {name_or_path!r}: expected {' or '.join(map(repr, NAMED_DATASETS))} "
        "or a path to a .jsonl/.csv manifest"
    )
