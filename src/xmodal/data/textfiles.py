"""Reading the text files behind the loaders, with errors located at ``file:line``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from xmodal.data.dataset import DataError


def error_at(path: str | Path, line: int, message: str) -> DataError:
    """A :class:`DataError` located at ``path:line``."""
    return DataError(f"{path}:{line}: {message}")


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for each non-blank CSV record of ``path``, header included.

    The line number is the record's first line (a quoted field may span several lines).
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    line = 1
    try:
        for row in reader:
            if row:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        raise error_at(path, reader.line_num, f"malformed CSV: {error}") from None
