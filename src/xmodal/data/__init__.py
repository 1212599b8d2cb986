"""Paired datasets: Flickr8k, users' own manifests, and image loading."""

from __future__ import annotations

from pathlib import Path

from xmodal.data.dataset import DataError, Flattened, Item, PairedDataset
from xmodal.data.flickr8k import default_data_root, load_flickr8k
from xmodal.data.images import load_image
from xmodal.data.manifest import MANIFEST_SUFFIXES, load_manifest

__all__ = [
    "DataError",
    "Flattened",
    "Item",
    "PairedDataset",
    "default_data_root",
    "load_dataset",
    "load_flickr8k",
    "load_image",
    "load_manifest",
]


def load_dataset(name_or_path: str, data_root: str | Path | None = None) -> PairedDataset:
    """``"flickr8k"`` (read from ``data_root``), or the path of a ``.jsonl``/``.csv`` manifest."""
    if name_or_path == "flickr8k":
        return load_flickr8k(data_root)
    if Path(name_or_path).suffix.lower() in MANIFEST_SUFFIXES:
        return load_manifest(name_or_path)
    raise DataError(
        f"unknown dataset {name_or_path!r}: expected 'flickr8k' or a path to a .jsonl/.csv manifest"
    )
