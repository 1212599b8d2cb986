"""Flickr8k: 8,000 images with 5 English captions each, in the official train/dev/test split.

Expected layout under the data root::

    flickr8k/Images/*.jpg
    flickr8k/captions.txt                      CSV, header ``image,caption``
    flickr8k/Flickr_8k.{train,dev,test}Images.txt   one image file name a line

Images that belong to no split are left out. Images are checked for existence only; they
are decoded when used (:func:`xmodal.data.images.load_image`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from xmodal.core.config import DATA_ENV, default_data_root
from xmodal.data.dataset import DataError, Item, PairedDataset
from xmodal.data.textfiles import csv_rows, error_at, read_text

CAPTIONS_FILE = "captions.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
_HINT = f"pass --data or set {DATA_ENV} to the directory that contains flickr8k/"


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path} ({_HINT})")
    return path


def _read_captions(path: Path) -> dict[str, list[str]]:
    """Captions per image name, in file order."""
    rows = csv_rows(path)
    line, header = next(rows, (1, []))
    if [field.strip() for field in header] != ["image", "caption"]:
        raise error_at(path, line, f"expected header 'image,caption', got {','.join(header)!r}")
    captions: dict[str, list[str]] = {}
    for line, row in rows:
        if len(row) > 2:
            message = f"expected 2 fields (image,caption), got {len(row)}; quote captions with commas"
            raise error_at(path, line, message)
        image = row[0].strip()
        caption = row[1].strip() if len(row) == 2 else ""
        if not image:
            raise error_at(path, line, "missing image name")
        if not caption:
            raise error_at(path, line, f"empty caption for image {image}")
        captions.setdefault(image, []).append(caption)
    return captions


def _split_names(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, image name)`` for each non-blank line of a split file."""
    for line, raw in enumerate(read_text(path).splitlines(), start=1):
        if raw.strip():
            yield line, raw.strip()


def load_flickr8k(root: str | Path | None = None) -> PairedDataset:
    """Load Flickr8k from ``root/flickr8k`` (default root: :func:`default_data_root`).

    Items are the train, then dev, then test images, each in split-file order; an item's id is
    the image file name and its values are ``{"image": (path,), "text": (captions...)}``.
    """
    data_root = _existing(Path(root) if root is not None else default_data_root(), "data root")
    base = _existing(Path(os.path.abspath(data_root / "flickr8k")), "Flickr8k directory")
    images = _existing(base / "Images", "Flickr8k image directory")
    captions = _read_captions(_existing(base / CAPTIONS_FILE, "Flickr8k captions file"))
    placed: dict[str, str] = {}  # image name -> "split file:line" where it was listed
    items: list[Item] = []
    for split, file_name in SPLIT_FILES.items():
        split_file = _existing(base / file_name, "Flickr8k split file")
        for line, name in _split_names(split_file):
            if name in placed:
                raise error_at(split_file, line, f"image {name} is already listed at {placed[name]}")
            if name not in captions:
                raise error_at(split_file, line, f"image {name} has no captions in {CAPTIONS_FILE}")
            image = images / name
            if not os.path.exists(image):
                raise error_at(split_file, line, f"image file not found: {image}")
            placed[name] = f"{split_file}:{line}"
            items.append(Item(name, split, {"image": (str(image),), "text": tuple(captions[name])}))
    return PairedDataset("flickr8k", items)
