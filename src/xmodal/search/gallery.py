"""Gallery items for an index: an id, a file path (image or audio) and captions, read from a
dataset (any of its modalities), a folder of images or a file of texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xmodal.data import DataError, PairedDataset, load_dataset
from xmodal.data.textfiles import read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".svg", ".svgz")


FILE_KINDS = ("image", "audio")  # galleries whose rows are files


@dataclass(frozen=True)
class IndexItem:
    """One gallery row's metadata: a file path (image and audio galleries) and its captions."""

    id: str
    path: str | None = None
    captions: tuple[str, ...] = ()

    def value(self, kind: str) -> str:
        """What a gallery of ``kind`` encodes of this item: its file's path, or its one text."""
        if kind not in (*FILE_KINDS, "text"):
            raise ValueError(f"galleries hold image, audio or text values, not {kind} values")
        value = self.path if kind in FILE_KINDS else (self.captions[0] if len(self.captions) == 1 else None)
        if value is None:
            needs = f"a{'n' if kind[0] in 'ai' else ''} {kind} file" if kind in FILE_KINDS else "exactly one text"
            raise ValueError(f"item {self.id!r} needs {needs} in a gallery of {kind} values")
        return value


def gallery_source(
    source: str | Path,
    *,
    data_root: str | Path | None = None,
    split: str | None = None,
    modality: str | None = None,
    captions: str | None = None,
) -> tuple[list[IndexItem], str]:
    """``(items, gallery modality)`` of ``source``: a folder of images (modality ``image``), a
    ``.txt`` file of texts, one a line (``text``), or a dataset name / manifest: its values of
    ``modality`` (default ``image``) with the texts of ``captions`` (default ``text``, when the
    dataset has it) as each row's captions. ``modality`` names the gallery's modality in the
    model for a folder or a text file."""
    path = Path(source)
    if path.is_dir():
        return items_from_folder(path), modality or "image"
    if path.suffix.lower() == ".txt":
        return items_from_texts(path), modality or "text"
    dataset = load_dataset(str(source), data_root)
    dataset = dataset.split(split) if split else dataset
    modality = modality or "image"
    if captions is None and "text" in dataset.modalities and modality != "text":
        captions = "text"
    return items_from_dataset(dataset, modality, captions), modality


def items_from_dataset(
    dataset: PairedDataset, modality: str = "image", captions: str | None = "text"
) -> list[IndexItem]:
    """One row per dataset item that has ``modality``: its first value (a file's path, or a
    text), and the texts of ``captions`` (a text modality) as its captions."""
    if modality not in dataset.modalities:
        raise DataError(f"{dataset.name}: no modality {modality!r}; it has {', '.join(dataset.modalities)}")
    kind = dataset.kind(modality)
    if kind == "vector":
        raise DataError(
            f"{dataset.name}: {modality!r} holds precomputed vectors; an index is built from files or texts"
        )
    if captions is not None and dataset.kind(captions) != "text":
        raise DataError(
            f"{dataset.name}: captions come from a text modality, not {captions!r} ({dataset.kind(captions)})"
        )
    items = []
    for item in dataset.items:
        values = item.values.get(modality)
        if not values:
            continue
        texts = tuple(item.values.get(captions, ())) if captions else ()
        if kind == "text":
            items.append(IndexItem(item.id, None, values[:1]))
        else:
            items.append(IndexItem(item.id, values[0], texts))
    if not items:
        raise DataError(f"{dataset.name}: no item has a value of {modality!r}")
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
