"""Gallery items for an index: an id, an image path and captions, read from a dataset, a
folder of images or a file of texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xmodal.data import DataError, PairedDataset, load_dataset
from xmodal.data.textfiles import read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".svg", ".svgz")


@dataclass(frozen=True)
class IndexItem:
    """One gallery row's metadata: an image path (image galleries) and its captions."""

    id: str
    path: str | None = None
    captions: tuple[str, ...] = ()

    def value(self, modality: str) -> str:
        """What a gallery of ``modality`` encodes of this item: its image path, or its text."""
        value = self.path if modality == "image" else (self.captions[0] if len(self.captions) == 1 else None)
        if value is None:
            needs = "an image" if modality == "image" else "exactly one text"
            raise ValueError(f"item {self.id!r} needs {needs} in a gallery of {modality}s")
        return value


def gallery_source(
    source: str | Path, *, data_root: str | Path | None = None, split: str | None = None
) -> tuple[list[IndexItem], str]:
    """``(items, gallery modality)`` of ``source``: a folder of images, a ``.txt`` file of
    texts (one a line), or a dataset name / manifest (its images, with their captions)."""
    path = Path(source)
    if path.is_dir():
        return items_from_folder(path), "image"
    if path.suffix.lower() == ".txt":
        return items_from_texts(path), "text"
    dataset = load_dataset(str(source), data_root)
    return items_from_dataset(dataset.split(split) if split else dataset), "image"


def items_from_dataset(dataset: PairedDataset) -> list[IndexItem]:
    """One item per dataset item that has an image: its path and captions."""
    items = [
        IndexItem(item.id, item.values["image"][0], tuple(item.values.get("text", ())))
        for item in dataset.items
        if item.values.get("image")
    ]
    if not items:
        raise DataError(f"{dataset.name}: no item has an image")
    return items


def items_from_folder(folder: str | Path) -> list[IndexItem]:
    """Every image file under ``folder`` (recursively, sorted); ids are relative paths."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return [IndexItem(p.relative_to(folder).as_posix(), str(p.resolve())) for p in files]


def items_from_texts(file: str | Path) -> list[IndexItem]:
    """One item per non-blank line of a UTF-8 text file; ids are ``<file stem>:<line>``."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"text file not found: {file}")
    items = [
        IndexItem(f"{file.stem}:{line}", None, (text.strip(),))
        for line, text in enumerate(read_text(file).splitlines(), start=1)
        if text.strip()
    ]
    if not items:
        raise DataError(f"{file}: no texts (one per line)")
    return items
