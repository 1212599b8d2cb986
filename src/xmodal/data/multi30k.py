"""Flickr8k joined with Multi30k: one image, captions in several languages, Flickr8k's split.

Modalities of each item (an item may miss any but ``image`` and ``en``):

- ``image``, ``en``: the Flickr8k image and its 5 English captions;
- ``de``: the 5 independently written German captions of Multi30k task 2;
- ``en1``, ``de1``, ``fr1``, ``cs1``: the task-1 sentence and its professional translations.

A Flickr8k file name's numeric prefix (before the first ``_``) is the Flickr30k file stem
that Multi30k uses. The MS-COCO test split of Multi30k holds no Flickr images and is skipped.
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

from xmodal.core.config import default_data_root
from xmodal.data.dataset import DataError, PairedDataset
from xmodal.data.flickr8k import load_flickr8k

TASK1_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2018_flickr")
TASK1_LANGUAGES = ("en", "de", "fr", "cs")
TASK2_SPLITS = ("train", "val", "test_2016")
MODALITIES = ("image", "en", "de", "en1", "de1", "fr1", "cs1")


def _lines(path: Path) -> list[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle.read().splitlines()]
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None


def _names(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"Multi30k file not found: {path} (set --data or XMODAL_DATA)")
    return [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]


def _aligned(names: list[str], texts: list[str], path: Path) -> list[tuple[str, str]]:
    if len(texts) != len(names):
        raise DataError(f"{path}: {len(texts)} lines, but its image split lists {len(names)} images")
    return list(zip(names, texts))


def _multi30k_texts(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{flickr30k stem: {modality: [texts]}}`` from the task-1 and task-2 raw files."""
    found: dict[str, dict[str, list[str]]] = {}

    def add(stem: str, modality: str, text: str) -> None:
        if text:
            found.setdefault(stem, {}).setdefault(modality, []).append(text)

    task1 = root / "task1"
    for split in TASK1_SPLITS:
        names = _names(task1 / "image_splits" / f"{split}.txt")
        for lang in TASK1_LANGUAGES:
            path = task1 / "raw" / f"{split}.{lang}.gz"
            if path.is_file():  # not every split has every language
                for stem, text in _aligned(names, _lines(path), path):
                    add(stem, f"{lang}1", text)
    task2 = root / "task2"
    for split in TASK2_SPLITS:
        names = _names(task2 / "image_splits" / f"{split}_images.txt")
        for n in range(1, 6):
            path = task2 / "raw" / f"{split}.{n}.de.gz"
            for stem, text in _aligned(names, _lines(path), path):
                add(stem, "de", text)
    return found


def load_flickr8k_multi30k(root: str | Path | None = None) -> PairedDataset:
    """Flickr8k items (same ids, order and split) with their Multi30k texts added."""
    data_root = Path(root) if root is not None else default_data_root()
    flickr = load_flickr8k(data_root)
    extra = _multi30k_texts(data_root / "multi30k")
    items = []
    for item in flickr.items:
        texts = extra.get(item.id.split("_", 1)[0], {})
        values = {
            "image": item.values["image"],
            "en": item.values["text"],
            **{m: tuple(texts[m]) for m in MODALITIES if m in texts},
        }
        items.append(replace(item, values=values))
    kinds = {m: "image" if m == "image" else "text" for m in MODALITIES}
    return PairedDataset("flickr8k-multi30k", items, kinds=kinds)
