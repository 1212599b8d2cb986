"""Writing benchmark results: markdown tables, sections of RESULTS.md, JSON files."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xmodal.core.files import write_text_atomic


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def stamp(command: str) -> str:
    """``Command: `...` · machine: ... · date``: the provenance line of a RESULTS section."""
    return f"Command: `{command}` · machine: {machine_description()} · {time.strftime('%Y-%m-%d')}"


def script_section(title: str, command: str, table: str, details: str = "", notes: Sequence[str] = ()) -> str:
    """A RESULTS.md section for a benchmark script: title, command/machine/date line, table, notes."""
    line = stamp(command) + (f" · {details}" if details else "")
    return "\n".join([f"### {title}", "", line, "", table, *([""] if notes else []), *notes])


def replace_section(path: Path, key: str, body: str) -> None:
    """Replace (or append) the text between ``<!-- begin KEY -->`` and ``<!-- end KEY -->``."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    text = path.read_text() if path.is_file() else "# Results\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, text)


def write_section(
    path: Path,
    key: str,
    title: str,
    command: str,
    table: str,
    details: str = "",
    notes: Sequence[str] = (),
    *,
    echo: bool = False,
    announce: bool = True,
) -> str:
    """Build a benchmark script's section (``script_section``), put it in ``path`` under ``key`` and return it.

    The file is rewritten atomically and keeps its other sections (``replace_section``). ``echo`` prints the
    section before writing it; ``announce`` prints ``updated PATH`` after.
    """
    body = script_section(title, command, table, details, notes)
    if echo:
        print(body)
    replace_section(path, key, body)
    if announce:
        print(f"updated {path}")
    return body


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(data, indent=1))
