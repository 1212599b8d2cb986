"""Users' own paired data: a JSONL or CSV manifest, chosen by the file's extension.

JSONL (``.jsonl``): one JSON object per line; blank lines are ignored::

    {"id": "dog-1", "split": "train", "image": "images/dog1.jpg", "texts": ["A dog.", "A pup."]}
    {"id": "cat-1", "split": "test", "image": "/data/cat1.jpg", "text": "A cat sleeps."}
    {"id": "note-7", "text": "A caption with no image."}

- ``id`` (required): a non-empty string, unique in the file.
- ``split`` (optional, default ``"train"``): any non-empty string.
- ``image`` (optional): path to an image file.
- ``texts`` (optional): a list of captions; ``"text": "..."`` is accepted instead for a single
  caption (not both).
- Each item needs an ``image`` or captions, or both. Other keys are ignored.

CSV (``.csv``, UTF-8, header row required): one row per (item, caption)::

    id,split,image,text
    dog-1,train,images/dog1.jpg,A dog runs.
    dog-1,train,images/dog1.jpg,"A brown dog, running."
    cat-1,test,/data/cat1.jpg,A cat sleeps.

- Columns: ``id`` (required) and at least one of ``image`` and ``text``; ``split`` is optional
  (a missing column or an empty cell means ``"train"``). Other columns are ignored.
- Rows with the same ``id`` add their captions to one item, in file order; they must agree on
  ``image`` and ``split``.
- Every row must fill ``id`` and each ``image`` / ``text`` column the header has; for items
  without an image, or without captions, next to others that have them, use JSONL.

Both formats: surrounding whitespace is ignored and captions must not be empty. Relative image
paths are resolved against the manifest's directory; every image must exist and be a readable
image file when the manifest is loaded. Items keep the order in which their ids first appear.
Errors name the manifest file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.dataset import DataError, Item, PairedDataset
from xmodal.data.images import check_image
from xmodal.data.textfiles import csv_rows, error_at, read_text

MANIFEST_SUFFIXES = (".jsonl", ".csv")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class _Record:
    """One validated JSONL line or CSV row."""

    line: int
    id: str
    split: str
    image: str | None  # absolute path
    texts: tuple[str, ...]


def _record(path: Path, line: int, item_id: str, split: str, image: str | None, texts: Iterable[str]) -> _Record:
    """Validate the fields of one line, shared by both formats."""
    item_id, split = item_id.strip(), split.strip()
    if not item_id:
        raise error_at(path, line, "missing or empty id")
    if not split:
        raise error_at(path, line, f"empty split for item {item_id!r}")
    captions = tuple(text.strip() for text in texts)
    if not all(captions):
        raise error_at(path, line, f"empty caption for item {item_id!r}")
    if image is not None:
        if not image.strip():
            raise error_at(path, line, f"empty image path for item {item_id!r}")
        image = os.path.abspath(os.path.join(path.parent, image.strip()))
    elif not captions:
        raise error_at(path, line, f"item {item_id!r} has neither an image nor a caption")
    return _Record(line, item_id, split, image, captions)


def _json_str(path: Path, line: int, obj: dict, key: str, default: str | None) -> str | None:
    """``obj[key]``, which must be a string; ``default`` when the key is absent or null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise error_at(path, line, f"{key!r} must be a string, got {json.dumps(value)}")
    return value


def _jsonl_records(path: Path) -> Iterator[_Record]:
    for line, raw in enumerate(read_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as error:
            message = f"invalid JSON: {error.msg} (column {error.colno})"
            raise error_at(path, line, message) from None
        if not isinstance(obj, dict):
            raise error_at(path, line, f"expected a JSON object, got {type(obj).__name__}")
        if "text" in obj and "texts" in obj:
            raise error_at(path, line, "give either 'text' or 'texts', not both")
        texts = obj.get("texts", [])
        if "text" in obj:
            texts = [_json_str(path, line, obj, "text", "")]
        elif not (isinstance(texts, list) and all(isinstance(text, str) for text in texts)):
            message = f"'texts' must be a list of strings, got {json.dumps(texts)}"
            raise error_at(path, line, message)
        yield _record(
            path,
            line,
            _json_str(path, line, obj, "id", "") or "",
            _json_str(path, line, obj, "split", DEFAULT_SPLIT) or "",
            _json_str(path, line, obj, "image", None),
            texts,
        )


def _csv_records(path: Path) -> Iterator[_Record]:
    rows = csv_rows(path)
    header_line, header = next(rows, (1, []))
    columns = {name.strip(): position for position, name in enumerate(header)}
    if "id" not in columns or not {"image", "text"} & columns.keys():
        raise error_at(path, header_line, f"header must name 'id' and 'image' and/or 'text', got {header}")

    def cell(row: list[str], name: str) -> str | None:
        return row[columns[name]] if name in columns else None

    for line, row in rows:
        if len(row) != len(header):
            message = f"expected {len(header)} fields like the header, got {len(row)}"
            raise error_at(path, line, message)
        text = cell(row, "text")
        yield _record(
            path,
            line,
            row[columns["id"]],
            (cell(row, "split") or "").strip() or DEFAULT_SPLIT,
            cell(row, "image"),
            () if text is None else (text,),
        )


def _items(path: Path, records: Iterable[_Record], merge_rows: bool) -> list[Item]:
    """Group records into items by id (``merge_rows``) or reject repeated ids; check images."""
    first: dict[str, _Record] = {}
    texts: dict[str, list[str]] = {}
    for record in records:
        seen = first.get(record.id)
        if seen is None:
            if record.image is not None:
                try:
                    check_image(record.image)
                except DataError as error:
                    raise error_at(path, record.line, str(error)) from None
            first[record.id], texts[record.id] = record, list(record.texts)
            continue
        if not merge_rows:
            message = f"duplicate id {record.id!r} (first on line {seen.line})"
            raise error_at(path, record.line, message)
        for field in ("split", "image"):
            if getattr(record, field) != getattr(seen, field):
                raise error_at(
                    path,
                    record.line,
                    f"item {record.id!r}: {field} {getattr(record, field)!r} differs from "
                    f"{getattr(seen, field)!r} on line {seen.line}",
                )
        texts[record.id].extend(record.texts)
    return [_item(record, tuple(texts[item_id])) for item_id, record in first.items()]


def _item(record: _Record, texts: tuple[str, ...]) -> Item:
    values: dict[str, tuple[str, ...]] = {}
    if record.image is not None:
        values["image"] = (record.image,)
    if texts:
        values["text"] = texts
    return Item(record.id, record.split, values)


def load_manifest(path: str | Path) -> PairedDataset:
    """Load a ``.jsonl`` or ``.csv`` manifest (see the module docstring for the schema)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise DataError(f"{path}: unsupported manifest format {suffix or '(no extension)'!r}; expected .jsonl or .csv")
    if not path.is_file():
        raise DataError(f"manifest file not found: {path}")
    if suffix == ".jsonl":
        items = _items(path, _jsonl_records(path), merge_rows=False)
    else:
        items = _items(path, _csv_records(path), merge_rows=True)
    return PairedDataset(path.stem, items)
