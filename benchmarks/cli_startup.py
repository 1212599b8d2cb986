"""Start-up cost of the command line: wall time and peak memory of ``xmodal --help``, and which
heavy libraries ``import xmodal.cli`` loads.

Each run is a fresh interpreter (``python -c "from xmodal.cli import app; app()" --help``,
what the ``xmodal`` script runs), timed from outside with ``/usr/bin/time``; the median of
``--runs`` runs is reported. ``--baseline SRC`` measures another source tree the same way in
the same run (e.g. a checkout of an older commit: ``git worktree add /tmp/old COMMIT``, then
``--baseline /tmp/old/src``), so the two figures come from one machine at one time::

    .venv/bin/python benchmarks/cli_startup.py --baseline /tmp/old/src --label-baseline 304a2dc
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from xmodal.bench.results import markdown_table, write_section

HEAVY = ("torch", "faiss", "matplotlib", "sklearn", "ot", "pyarrow", "scipy", "numpy")
SRC = Path(__file__).resolve().parents[1] / "src"


def help_runs(src: Path, runs: int) -> list[tuple[float, int]]:
    """``(seconds, peak RSS in KB)`` of each run of ``xmodal --help`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = []
    for _ in range(runs):
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", sys.executable, "-c", "from xmodal.cli import app; app()", "--help"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds, kb = done.stderr.strip().splitlines()[-1].split()
        out.append((float(seconds), int(kb)))
    return out


def heavy_imports(src: Path) -> list[str]:
    """The libraries of :data:`HEAVY` that ``import xmodal.cli`` loads."""
    code = f"import sys, xmodal.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="src/ folder of another version to measure alongside")
    parser.add_argument("--label-baseline", default="baseline")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    trees = ([(args.label_baseline, args.baseline)] if args.baseline else []) + [("this tree", SRC)]
    rows = []
    for label, src in trees:
        runs = help_runs(src, args.runs)
        seconds = [s for s, _ in runs]
        heavy = heavy_imports(src)
        rows.append([
            label, f"{statistics.median(seconds):.2f}", f"{min(seconds):.2f}–{max(seconds):.2f}",
            f"{statistics.median(kb for _, kb in runs) / 1024:.0f}", ", ".join(heavy) or "none",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    columns = ["code", f"median s ({args.runs} runs)", "range s", "peak RSS MB", "heavy libraries imported"]
    command = shlex.join(["python", "benchmarks/cli_startup.py", *sys.argv[1:]])
    write_section(
        args.results,
        "cli-startup",
        "CLI start-up: `xmodal --help`", command, markdown_table(columns, rows),
        notes=["Heavy libraries checked: " + ", ".join(HEAVY) + " (in `sys.modules` after `import xmodal.cli`)."],
    )  # fmt: skip


if __name__ == "__main__":
    main()
