"""Warm ``make bench`` before and after a change (issue 16): the wall time of ``xmodal bench
flickr8k`` with every embedding cached, run by the code of a git revision (``--before``,
default HEAD, checked out in a temporary worktree) and by the working tree, with the same
venv, cache, data and models; the runs alternate and each side's median is reported. The
printed tables (but the fit seconds) and the JSON metrics of every run must be identical.
One more run of the working tree, in a process whose phases are timed by wrapping the
functions that do them, says where its time goes. The measured runs write their results to a
temporary folder; only this script's own section of RESULTS.md is replaced.

    .venv/bin/python benchmarks/bench_warm.py [--before REV] [--runs 3]

Only the standard library is imported at the top: ``--phases`` runs count their imports (and
run with ``python -P``, so that ``benchmarks/statistics.py`` cannot shadow the standard library).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
XMODAL = Path(sys.executable).parent / "xmodal"  # the venv's console script, as `make bench` runs it
BENCH = ["bench", "flickr8k"]
# Phase: the function (module, attribute path) whose calls it is; the rest is Python start-up, typer and printing.
PHASES = {
    "dataset load": ("xmodal.data", "load_dataset"),
    "encoders built (imports torch)": ("xmodal.store.embeddings", "resolve_encoder"),
    "cache read (keys, chunks)": ("xmodal.store.cache", "EmbeddingStore.embed"),
    "fit: statistics": ("xmodal.align.base", "Aligner.statistics"),
    "fit: solves": ("xmodal.align.base", "Aligner.fit_statistics"),
    "transform test rows": ("xmodal.align.base", "Aligner.transform"),
    "evaluate": ("xmodal.bench.pairs", "evaluate_bidirectional"),
    "write RESULTS and JSON": ("xmodal.bench.pairs", "write_results"),
}


def main() -> None:
    if sys.argv[1:2] == ["--phases"]:  # internal: `--phases FILE XMODAL-ARGS...`, the timed run
        _timed_run(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="git revision of the code before the change")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    from xmodal.core import config

    env = {
        **os.environ,
        config.CACHE_ENV: str(config.default_cache_dir().resolve()),
        config.DATA_ENV: str(config.default_data_root()),
        config.MODELS_ENV: str(config.default_models_dir().resolve()),
        "COLUMNS": "200",
    }
    load = [_loadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as folder:
        tmp = Path(folder)
        subprocess.run(["git", "worktree", "add", "--detach", tmp / "before", args.before], cwd=REPO, check=True)
        try:
            trees = {"before": tmp / "before", "after": REPO}
            walls: dict[str, list[float]] = {side: [] for side in trees}
            cpus: dict[str, list[float]] = {side: [] for side in trees}
            outputs = []
            for run in range(args.runs):
                for side, tree in trees.items():
                    wall, cpu, output = _bench(tree, env, tmp / f"{side}-{run}")
                    walls[side].append(wall)
                    cpus[side].append(cpu)
                    outputs.append(output)
                    print(f"{side} run {run + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            phases_path = tmp / "phases.json"
            wall, _, output = _bench(
                REPO, env, tmp / "phases", (sys.executable, "-P", __file__, "--phases", str(phases_path))
            )
            outputs.append(output)
            phases = json.loads(phases_path.read_text())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tmp / "before"], cwd=REPO, check=True)
    load.append(_loadavg())
    differing = [output for output in outputs if output != outputs[0]]
    if differing:
        raise SystemExit(f"the runs printed or wrote different figures:\n{outputs[0]}\n{differing[0]}")
    _report(args, walls, cpus, phases, wall, load)


def _bench(
    tree: Path, env: dict[str, str], out: Path, xmodal: tuple[str, ...] = (str(XMODAL),)
) -> tuple[float, float, tuple[str, str]]:
    """The wall and CPU (user + system) seconds of one ``xmodal bench flickr8k`` by the code of
    ``tree`` (results written under ``out``), and its figures: the printed table (but the fit
    seconds) and the JSON metrics."""
    command = [*xmodal, *BENCH, "--results", str(out / "RESULTS.md"), "--json-dir", str(out)]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=tree, env={**env, "PYTHONPATH": str(tree / "src")}, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    if done.returncode:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    table = "\n".join(line.rsplit("│", 2)[0] for line in done.stdout.splitlines() if line.startswith("│"))
    (result,) = out.glob("*.json")
    metrics = json.dumps([(r["aligner"], r["csls_k"], r["metrics"]) for r in json.loads(result.read_text())["rows"]])
    return wall, cpu, (table, metrics)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_run(out: Path, argv: list[str]) -> None:
    """In this process: ``xmodal ARGV`` with the seconds spent in each of :data:`PHASES` (and
    in importing the command's modules) written to ``out`` as JSON."""
    started = time.perf_counter()
    modules = {name: importlib.import_module(name) for name in ("xmodal.cli", *(m for m, _ in PHASES.values()))}
    seconds = {"import xmodal, numpy, scipy, typer": time.perf_counter() - started}
    for phase, (module, attribute) in PHASES.items():
        owner: Any = modules[module]
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, _timed(getattr(owner, name), phase, seconds))
    try:
        modules["xmodal.cli"].app(argv)
    except SystemExit as done:
        if done.code:
            raise
    seconds["total in process"] = time.perf_counter() - started
    out.write_text(json.dumps(seconds))


def _timed(function: Callable[..., Any], phase: str, seconds: dict[str, float]) -> Callable[..., Any]:
    """``function``, adding the seconds of each call to ``seconds[phase]`` (outermost calls only)."""
    active = [0]

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        active[0] += 1
        try:
            return function(*args, **kwargs)
        finally:
            active[0] -= 1
            if not active[0]:
                seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - started

    return timed


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _report(
    args: argparse.Namespace,
    walls: dict[str, list[float]],
    cpus: dict[str, list[float]],
    phases: dict[str, float],
    wall: float,
    load: list[str],
) -> None:
    import numpy as np  # (benchmarks/statistics.py shadows the standard library's statistics here)

    from xmodal.bench.results import markdown_table, write_section

    median = {side: float(np.median(walls[side])) for side in walls}
    rows = [
        [code, f"{median[side]:.1f}", ", ".join(f"{w:.1f}" for w in walls[side]), f"{float(np.median(cpus[side])):.1f}"]
        for side, code in (("before", f"before (`{args.before}`)"), ("after", "after (working tree)"))
    ]
    in_process = phases.pop("total in process")
    named = sum(phases.values())
    breakdown = [[phase, f"{s:.2f}", f"{100 * s / wall:.0f}%"] for phase, s in phases.items()]
    breakdown += [
        ["the rest in process (typer, printing, pairing rows)", f"{in_process - named:.2f}", f"{100 * (in_process - named) / wall:.0f}%"],
        ["Python start-up", f"{wall - in_process:.2f}", f"{100 * (wall - in_process) / wall:.0f}%"],
    ]  # fmt: skip
    tables = "\n\n".join(
        [
            markdown_table(["code", "median wall s", "runs, wall s", "median CPU s (user + system)"], rows),
            f"Where the time of one more run of the working tree ({wall:.1f} s) goes:",
            markdown_table(["phase", "s", "share"], breakdown),
        ]
    )
    write_section(
        args.results,
        "bench-warm",
        "Warm `make bench`: before and after (issue 16)",
        shlex.join(["python", "benchmarks/bench_warm.py", *sys.argv[1:]]),
        tables,
        f"`xmodal bench flickr8k`, every embedding cached, runs alternating; load average {load[0]} before, "
        f"{load[1]} after",
        notes=[
            f"- After / before: {median['after'] / median['before']:.2f} by the medians "
            f"({median['before'] / median['after']:.2f}× faster), {min(walls['after']) / min(walls['before']):.2f} by "
            "the fastest runs (the least disturbed by other work on the machine); every run printed the same table "
            "(but the fit seconds) and wrote the same JSON metrics.",
        ],
        echo=True,
    )


if __name__ == "__main__":
    main()
