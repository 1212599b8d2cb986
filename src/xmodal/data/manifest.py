"""Users' own paired data: a JSONL or CSV manifest of items, each with values of named modalities.

JSONL (``.jsonl``): one JSON object per line; blank lines are ignored::

    {"id": "dog-1", "split": "train", "image": "images/dog1.jpg", "texts": ["A dog.", "A pup."]}
    {"id": "dog-2", "image": "images/dog2.png", "text.en": "A dog.", "text.fr": ["Un chien."],
     "audio.en": "audio/dog2_en.ogg", "vector.clip": [0.12, -0.03, ...]}

- ``id`` (required): a non-empty string, unique in the file.
- ``split`` (optional, default ``"train"``): any non-empty string.
- ``label`` (optional): the item's class label, a non-empty string (e.g. ``"animals"``);
  ``label.NAME`` keys (``label.species``) hold other label sets. Items may miss labels.
- Every other key is a **modality**, and every modality has a kind:

  ========  ============================================================================
  kind      values (one, or a list of several)
  ========  ============================================================================
  image     paths of image files (PNG, JPEG, ... and SVG), checked readable on load
  text      non-empty strings
  audio     paths of audio files (checked to exist; encoders come with the speech work)
  vector    precomputed embeddings: a list of numbers (or a list of such lists), or,
            when the modality names a ``file``, row numbers into it (an int or a list)
  ========  ============================================================================

  A key's kind follows the **naming rule** (the key itself, or its prefix before a dot:
  ``image``, ``text.fr``, ``image.sketch``, ``audio.en``, ``vector.clip``) or is **declared**
  once, in a header line (the first line, an object with ``"xmodal": "manifest"``) or in a
  sidecar file ``<manifest stem>.modalities.json`` (not both)::

    {"xmodal": "manifest",
     "modalities": {"caption_nl": "text", "clip": {"kind": "vector", "file": "clip.npy"},
                    "emb": {"kind": "vector", "file": "emb.parquet", "column": "embedding", "dim": 512}},
     "ignore": ["url", "license"]}

  A vector ``file`` (relative to the manifest) is a 2-d ``.npy`` array, or a Parquet file
  whose ``column`` holds one list of numbers per row; ``dim``, when given, is checked.
  Keys listed under ``ignore`` are skipped; any other key that is neither declared nor
  named by the rule is an error.
- The first two formats' keys keep their meaning: ``texts`` is a list of captions of the
  modality ``text``, and ``text`` must then be a single string (not both).
- An item needs a value of at least one modality; items may miss modalities.

CSV (``.csv``, UTF-8, header row required): one row per (item, value)::

    id,split,image,text,text.fr
    dog-1,train,images/dog1.jpg,A dog runs.,Un chien court.
    dog-1,train,images/dog1.jpg,"A brown dog, running.",

- Columns: ``id`` (required), ``split`` (optional: a missing column or an empty cell means
  ``"train"``), ``label`` and ``label.NAME`` (optional: an empty cell means no label) and
  modality columns, by the same rule, declarations (sidecar only) and ``ignore`` list as
  JSONL; ``texts`` is not a CSV column.
- Rows with the same ``id`` add their text values to one item, in file order; their other
  values (image, audio, vector), labels and ``split`` must agree.
- The ``image`` and ``text`` columns must be filled on every row (as before); an empty cell
  of any other modality column means "no value". A vector cell is a row number, or an inline
  JSON list of numbers.

Both formats: surrounding whitespace is ignored and texts must not be empty. Relative paths
are resolved against the manifest's directory. Items keep the order in which their ids first
appear. Every error names the manifest (or sidecar) file and line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.data.dataset import KINDS, DataError, Item, PairedDataset, is_label_key, kind_by_name
from xmodal.data.images import check_image
from xmodal.data.textfiles import csv_rows, error_at, read_text

MANIFEST_SUFFIXES = (".jsonl", ".csv")
DEFAULT_SPLIT = "train"
RESERVED = ("id", "split")
HEADER_MARK = "manifest"  # the header line's "xmodal" value
SIDECAR_SUFFIX = ".modalities.json"
LEGACY_KEYS = {"texts": "text"}  # JSONL keys of the first format -> modality
STRICT_CSV_COLUMNS = ("image", "text")  # must be filled on every row, as in the first format


@dataclass
class _Modality:
    """One modality of a manifest: its kind, and for vectors where they come from."""

    name: str
    kind: str
    file: Path | None = None  # vectors: a .npy or .parquet file
    matrix: np.ndarray | None = None  # the file's vectors
    dim: int | None = None
    rows: list[np.ndarray] = field(default_factory=list)  # inline vectors
    first_line: int = 0  # where the first inline vector was, for the mixed-dimension error

    def vectors(self) -> np.ndarray:
        if self.matrix is not None:
            return self.matrix
        return np.asarray(self.rows, dtype=np.float32).reshape(len(self.rows), self.dim or 0)


@dataclass
class _Schema:
    """What the keys of a manifest mean: declared modalities, ignored keys, and the rule."""

    path: Path  # the manifest, for error locations
    declared: dict[str, _Modality] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    used: dict[str, _Modality] = field(default_factory=dict)

    def modality(self, key: str, line: int) -> _Modality | None:
        """The modality of ``key`` (None for an ignored key); an unknown key raises."""
        key = LEGACY_KEYS.get(key, key)
        if key in self.ignore:
            return None
        found = self.used.get(key) or self.declared.get(key)
        if found is None:
            kind = kind_by_name(key)
            if kind is None:
                raise error_at(
                    self.path,
                    line,
                    f"unknown key {key!r}: declare its kind in a header line or {self.path.stem}{SIDECAR_SUFFIX}, "
                    f"name it KIND or KIND.NAME with KIND one of {', '.join(KINDS)} (e.g. text.fr), "
                    'or list it under "ignore"',
                )
            found = _Modality(key, kind)
        self.used.setdefault(key, found)
        return found


def _declarations(schema: _Schema, obj: Any, where: Path, line: int) -> None:
    """Read a header line or sidecar object into ``schema``."""
    if not isinstance(obj, dict):
        raise error_at(where, line, f"the modality declarations must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"xmodal", "modalities", "ignore"}
    if unknown:
        raise error_at(where, line, f"unknown declaration key {sorted(unknown)[0]!r}; expected modalities, ignore")
    ignore = obj.get("ignore", [])
    if not (isinstance(ignore, list) and all(isinstance(k, str) for k in ignore)):
        raise error_at(where, line, f"'ignore' must be a list of key names, got {json.dumps(ignore)}")
    schema.ignore = frozenset(ignore)
    modalities = obj.get("modalities", {})
    if not isinstance(modalities, dict):
        raise error_at(where, line, f"'modalities' must be an object of name: kind, got {json.dumps(modalities)}")
    for name, spec in modalities.items():
        if name in RESERVED or is_label_key(name) or name in LEGACY_KEYS:
            raise error_at(where, line, f"{name!r} is not a modality name (reserved)")
        spec = {"kind": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
            raise error_at(where, line, f"modality {name!r}: give a kind, or an object with a 'kind'")
        kind = spec["kind"]
        if kind not in KINDS:
            raise error_at(where, line, f"modality {name!r}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        extra = set(spec) - {"kind", "file", "column", "dim"}
        if extra or (kind != "vector" and set(spec) != {"kind"}):
            raise error_at(where, line, f"modality {name!r}: only vector modalities take file, column and dim")
        dim = spec.get("dim")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise error_at(where, line, f"modality {name!r}: 'dim' must be a positive integer, got {dim!r}")
        modality = _Modality(name, kind, dim=dim)
        if "file" in spec:
            modality.file = (schema.path.parent / str(spec["file"])).resolve()
            modality.matrix = _vector_file(modality, spec.get("column"), where, line)
        elif "column" in spec:
            raise error_at(where, line, f"modality {name!r}: 'column' goes with a Parquet 'file'")
        schema.declared[name] = modality


def _vector_file(modality: _Modality, column: Any, where: Path, line: int) -> np.ndarray:
    """The float32 matrix of a vector file (``.npy``, or a Parquet ``column`` of lists)."""
    path = modality.file
    assert path is not None
    if not path.is_file():
        raise error_at(where, line, f"modality {modality.name!r}: vector file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            if column is not None:
                raise error_at(where, line, f"modality {modality.name!r}: a .npy file has no columns")
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        elif path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            if not isinstance(column, str):
                raise error_at(where, line, f"modality {modality.name!r}: name the Parquet 'column' of the vectors")
            table = pq.read_table(path, columns=[column])
            matrix = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
        else:
            raise error_at(where, line, f"modality {modality.name!r}: vector files are .npy or .parquet, got {path}")
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, DataError):
            raise
        raise error_at(where, line, f"modality {modality.name!r}: cannot read vectors from {path}: {error}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number) or matrix.shape[0] == 0:
        raise error_at(where, line, f"{path}: expected a non-empty 2-d array of numbers, got shape {matrix.shape}")
    if modality.dim is not None and matrix.shape[1] != modality.dim:
        raise error_at(where, line, f"{path}: vectors of length {matrix.shape[1]}, declared dim {modality.dim}")
    if not np.isfinite(matrix).all():
        raise error_at(where, line, f"{path}: the vectors hold NaN or infinite values")
    modality.dim = int(matrix.shape[1])
    return np.asarray(matrix, dtype=np.float32)


def _sidecar(schema: _Schema) -> bool:
    """Read ``<stem>.modalities.json`` into ``schema`` when it exists."""
    path = schema.path.with_name(schema.path.stem + SIDECAR_SUFFIX)
    if not path.is_file():
        return False
    try:
        obj = json.loads(read_text(path))
    except RecursionError:
        raise error_at(path, 1, "invalid JSON: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise error_at(path, error.lineno, f"invalid JSON: {error.msg} (column {error.colno})") from None
    _declarations(schema, obj, path, 1)
    return True


@dataclass
class _Record:
    """One validated JSONL line or CSV row: ``{modality: values}`` and ``{label key: label}``."""

    line: int
    id: str
    split: str
    values: dict[str, tuple[str, ...]]
    labels: dict[str, str]


class _Reader:
    """Turns raw values into validated values of each modality's kind."""

    def __init__(self, schema: _Schema):
        self.schema = schema
        self.path = schema.path
        self.checked: set[str] = set()  # image files already decoded

    def record(self, line: int, item_id: str, split: str, raw: dict[str, Any], labels: dict[str, Any]) -> _Record:
        item_id, split = item_id.strip(), split.strip()
        if not item_id:
            raise error_at(self.path, line, "missing or empty id")
        if not split:
            raise error_at(self.path, line, f"empty split for item {item_id!r}")
        stripped = {}
        for key, label in labels.items():
            if not isinstance(label, str) or not label.strip():
                message = f"{key!r} of item {item_id!r} must be a non-empty string, got {json.dumps(label)}"
                raise error_at(self.path, line, message)
            stripped[key] = label.strip()
        values: dict[str, tuple[str, ...]] = {}
        for key, value in raw.items():
            modality = self.schema.modality(key, line)
            if modality is not None:
                values[modality.name] = self._values(modality, value, line, item_id)
        if not any(values.values()):
            raise error_at(self.path, line, f"item {item_id!r} has no value of any modality")
        return _Record(line, item_id, split, {m: v for m, v in values.items() if v}, stripped)

    def _values(self, modality: _Modality, value: Any, line: int, item_id: str) -> tuple[str, ...]:
        if modality.kind == "vector":
            return self._vectors(modality, value, line)
        many = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in many):
            noun = "texts" if modality.kind == "text" else "paths"
            message = f"{modality.name!r} must be a string or a list of {noun}, got {json.dumps(value)}"
            raise error_at(self.path, line, message)
        stripped = [v.strip() for v in many]
        if modality.kind == "text":
            if not all(stripped):
                raise error_at(self.path, line, f"empty caption for item {item_id!r}")
            return tuple(stripped)
        if not all(stripped):
            raise error_at(self.path, line, f"empty {modality.kind} path for item {item_id!r}")
        paths = tuple(os.path.abspath(os.path.join(self.path.parent, v)) for v in stripped)
        for path in paths:
            self._check_file(modality.kind, path, line)
        return paths

    def _check_file(self, kind: str, path: str, line: int) -> None:
        if path in self.checked:
            return
        if kind == "image":
            try:
                check_image(path)
            except DataError as error:
                raise error_at(self.path, line, str(error)) from None
        elif not os.path.isfile(path):
            raise error_at(self.path, line, f"{kind} file not found: {path}")
        self.checked.add(path)

    def _vectors(self, modality: _Modality, value: Any, line: int) -> tuple[str, ...]:
        """Row numbers (as strings) of the values: into the file, or of newly added inline rows."""
        if modality.matrix is not None:
            many = value if isinstance(value, list) else [value]
            n = len(modality.matrix)
            for row in many:
                if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < n:
                    message = f"{modality.name!r}: expected row numbers 0..{n - 1} into {modality.file}, got {row!r}"
                    raise error_at(self.path, line, message)
            return tuple(str(row) for row in many)
        if not isinstance(value, list) or not value:
            message = f"{modality.name!r}: expected a list of numbers (an inline vector), got {json.dumps(value)}"
            raise error_at(self.path, line, message)
        many = value if isinstance(value[0], list) else [value]
        refs = []
        for vector in many:
            if not (isinstance(vector, list) and vector and all(_is_number(x) for x in vector)):
                message = f"{modality.name!r}: a vector is a non-empty list of numbers, got {json.dumps(vector)[:80]}"
                raise error_at(self.path, line, message)
            if not all(math.isfinite(x) for x in vector):
                raise error_at(self.path, line, f"{modality.name!r}: the vector holds NaN or infinite values")
            if modality.dim is None:
                modality.dim, modality.first_line = len(vector), line
            elif len(vector) != modality.dim:
                if modality.first_line:
                    message = (
                        f"{modality.name!r}: mixed dimensions: a vector of length {len(vector)}, "
                        f"but the one on line {modality.first_line} has length {modality.dim}"
                    )
                else:
                    message = (
                        f"{modality.name!r}: vector of length {len(vector)}, but the declared dim is {modality.dim}"
                    )
                raise error_at(self.path, line, message)
            modality.rows.append(np.asarray(vector, dtype=np.float32))
            refs.append(str(len(modality.rows) - 1))
        return tuple(refs)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _json_str(path: Path, line: int, obj: dict, key: str, default: str) -> str:
    """``obj[key]``, which must be a string; ``default`` when the key is absent or null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise error_at(path, line, f"{key!r} must be a string, got {json.dumps(value)}")
    return value


def _jsonl_records(schema: _Schema, has_sidecar: bool) -> Iterator[_Record]:
    path = schema.path
    reader = _Reader(schema)
    first = True
    for line, raw in enumerate(read_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except RecursionError:
            raise error_at(path, line, "invalid JSON: nested too deeply") from None
        except json.JSONDecodeError as error:
            raise error_at(path, line, f"invalid JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(obj, dict):
            raise error_at(path, line, f"expected a JSON object, got {type(obj).__name__}")
        if "xmodal" in obj:
            if not first or obj["xmodal"] != HEADER_MARK:
                raise error_at(path, line, f'a header line comes first and holds "xmodal": "{HEADER_MARK}"')
            if has_sidecar:
                raise error_at(path, line, f"modalities declared twice: here and in {path.stem}{SIDECAR_SUFFIX}")
            _declarations(schema, obj, path, line)
            first = False
            continue
        first = False
        if "text" in obj and "texts" in obj:
            raise error_at(path, line, "give either 'text' or 'texts', not both")
        if "texts" in obj and not (isinstance(obj["texts"], list) and all(isinstance(t, str) for t in obj["texts"])):
            raise error_at(path, line, f"'texts' must be a list of strings, got {json.dumps(obj['texts'])}")
        if "text" in obj and "text" not in schema.declared:
            _json_str(path, line, obj, "text", "")  # the first format's 'text' is one string
        values = {k: v for k, v in obj.items() if k not in RESERVED and not is_label_key(k) and v is not None}
        labels = {k: v for k, v in obj.items() if is_label_key(k) and k not in schema.ignore and v is not None}
        item_id, split = _json_str(path, line, obj, "id", ""), _json_str(path, line, obj, "split", DEFAULT_SPLIT)
        yield reader.record(line, item_id, split, values, labels)


def _csv_records(schema: _Schema) -> Iterator[_Record]:
    path = schema.path
    reader = _Reader(schema)
    rows = csv_rows(path)
    header_line, header = next(rows, (1, []))
    names = [name.strip() for name in header]
    if "id" not in names:
        raise error_at(path, header_line, f"header must name 'id' and at least one modality, got {header}")
    columns = {name: i for i, name in enumerate(names) if name not in RESERVED and not is_label_key(name)}
    modal = {n: i for n, i in columns.items() if schema.modality(n, header_line) is not None}
    label_columns = {n: i for i, n in enumerate(names) if is_label_key(n) and n not in schema.ignore}
    if not modal:
        raise error_at(path, header_line, f"header must name 'id' and at least one modality, got {header}")
    for line, row in rows:
        if len(row) != len(header):
            raise error_at(path, line, f"expected {len(header)} fields like the header, got {len(row)}")
        raw: dict[str, Any] = {}
        for name, i in modal.items():
            cell = row[i]
            if not cell.strip() and name not in STRICT_CSV_COLUMNS:
                continue
            raw[name] = _csv_vector(cell, path, line) if schema.used[name].kind == "vector" else cell
        split = row[names.index("split")].strip() if "split" in names else ""
        labels = {n: row[i] for n, i in label_columns.items() if row[i].strip()}
        yield reader.record(line, row[names.index("id")], split or DEFAULT_SPLIT, raw, labels)


def _csv_vector(cell: str, path: Path, line: int) -> Any:
    """A vector cell: a row number, or a JSON list of numbers."""
    try:
        return json.loads(cell)
    except (json.JSONDecodeError, RecursionError):
        raise error_at(path, line, f"a vector cell is a row number or a JSON list, got {cell[:40]!r}") from None


def _items(schema: _Schema, records: Iterator[_Record], merge_rows: bool) -> list[Item]:
    """Group records into items by id (``merge_rows``: texts add up, other values must agree)
    or reject repeated ids."""
    path = schema.path
    first: dict[str, _Record] = {}
    for record in records:
        seen = first.get(record.id)
        if seen is None:
            first[record.id] = _Record(record.line, record.id, record.split, dict(record.values), dict(record.labels))
            continue
        if not merge_rows:
            raise error_at(path, record.line, f"duplicate id {record.id!r} (first on line {seen.line})")
        if record.split != seen.split:
            raise error_at(
                path,
                record.line,
                f"item {record.id!r}: split {record.split!r} differs from {seen.split!r} on line {seen.line}",
            )
        for key, label in record.labels.items():
            before_label = seen.labels.setdefault(key, label)
            if label != before_label:
                raise error_at(
                    path,
                    record.line,
                    f"item {record.id!r}: {key} {label!r} differs from {before_label!r} on line {seen.line}",
                )
        for modality, values in record.values.items():
            before = seen.values.get(modality)
            if before is None or schema.used[modality].kind == "text":
                seen.values[modality] = (before or ()) + values
            elif values != before:
                raise error_at(
                    path,
                    record.line,
                    f"item {record.id!r}: {modality} {values[0]!r} differs from {before[0]!r} on line {seen.line}",
                )
    return [Item(r.id, r.split, r.values, r.labels) for r in first.values()]


def load_manifest(path: str | Path) -> PairedDataset:
    """Load a ``.jsonl`` or ``.csv`` manifest (see the module docstring for the schema)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise DataError(f"{path}: unsupported manifest format {suffix or '(no extension)'!r}; expected .jsonl or .csv")
    if not path.is_file():
        raise DataError(f"manifest file not found: {path}")
    schema = _Schema(path)
    has_sidecar = _sidecar(schema)
    records = _jsonl_records(schema, has_sidecar) if suffix == ".jsonl" else _csv_records(schema)
    items = _items(schema, records, merge_rows=suffix == ".csv")
    kinds = {name: m.kind for name, m in schema.used.items()}
    vectors = {name: m.vectors() for name, m in schema.used.items() if m.kind == "vector"}
    return PairedDataset(path.stem, items, kinds=kinds, vectors=vectors)
