"""Engines: encoding a Flickr8k slice into shards in this process vs on a local Ray cluster,
and a statistics pass over out-of-core pairs, on the same CPUs.

1. Encode: the first ``--items`` train items (5 captions each, minilm; one image each,
   efficientnet-lite0) into shards of ``--shard-rows`` values, by the in-process engine (one
   process, its libraries' own threads on every core), by Ray with 1 worker and with 2 workers
   (one CPU each). Wall time includes each worker loading its encoder; the cluster's start is
   timed apart. Rows must be equal to the in-process engine's.
2. Statistics: ``cca-256-weighted``'s sums over ``--pairs`` synthetic row-paired pairs (384-d x
   1280-d, written as shards of 32,768 rows) streamed by each engine.

The projection per added node assumes the pass stays compute-bound (shared storage keeps up)
and that a node's workers run at the measured one-worker rate times the measured 1 -> 2
worker efficiency.

    .venv/bin/python benchmarks/engine.py
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.store import Engine, LocalEngine, RayEngine, Shards, encode_split, write_shards

ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}
NODE_CPUS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--items", type=int, default=800, help="train items to encode")
    parser.add_argument("--shard-rows", type=int, default=200, help="values per shard (one task)")
    parser.add_argument("--pairs", type=int, default=262_144, help="synthetic pairs of the statistics pass")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    part = load_flickr8k(args.data).split("train").subset(args.items)
    counts = {m: len(part.flatten(m).values) for m in ENCODERS}
    work = Path(tempfile.mkdtemp(prefix="xmodal-engine-"))
    pairs = _synthetic_pairs(work / "pairs", args.pairs)

    def encode(engine: Engine, name: str) -> tuple[float, dict[str, np.ndarray]]:
        started = time.perf_counter()
        encoded = encode_split(part, ENCODERS, work / name, engine=engine, shard_rows=args.shard_rows)
        seconds = time.perf_counter() - started
        return seconds, {m: s.to_array() for m, s in encoded.shards.items()}

    def statistics(engine: Engine) -> float:
        started = time.perf_counter()
        make_aligner("cca-256-weighted").shard_statistics(pairs, engine=engine)
        return time.perf_counter() - started

    runs: dict[str, dict[str, float]] = {}
    local_seconds, reference = encode(LocalEngine(), "local")
    runs["in-process"] = {"encode": local_seconds, "statistics": statistics(LocalEngine()), "start": 0.0}
    difference = 0.0
    for workers in (1, 2):
        started = time.perf_counter()
        with RayEngine(workers=workers) as engine:
            start = time.perf_counter() - started
            seconds, rows = encode(engine, f"ray{workers}")
            runs[f"Ray, {workers} worker{'s' * (workers > 1)}"] = {
                "encode": seconds, "statistics": statistics(engine), "start": start
            }  # fmt: skip
        difference = max(difference, *(float(np.abs(rows[m] - reference[m]).max()) for m in ENCODERS))
        print(runs, flush=True)

    values = sum(counts.values())
    base = runs["in-process"]
    columns = ["engine", "cluster start (s)", "encode (s)", "values/s", "vs in-process", "statistics pass (s)",
               "pairs/s", "vs in-process"]  # fmt: skip
    table = markdown_table(columns, [_row(name, r, base, values, args.pairs) for name, r in runs.items()])
    one, two = runs["Ray, 1 worker"], runs["Ray, 2 workers"]
    efficiency = one["encode"] / (2 * two["encode"])
    per_node = NODE_CPUS * values / one["encode"] * efficiency
    overhead = two["encode"] / base["encode"]
    write_section(
        args.results,
        "engine",
        "Engines: encode a Flickr8k slice and stream statistics, in-process vs a local Ray cluster",
        shlex.join(["python", "benchmarks/engine.py", *sys.argv[1:]]),
        table,
        f"{args.items} train items: {counts['text']} captions (minilm) + {counts['image']} images "
        f"(efficientnet-lite0), shards of {args.shard_rows} values; statistics of {args.pairs:,} pairs "
        f"384-d x 1280-d; {os.cpu_count()} CPUs",
        notes=[
            "",
            f"Rows encoded by Ray equal the in-process rows (largest absolute difference {difference:.1g}). "
            f"Overhead ratio on the same {os.cpu_count()} cores: Ray with 2 workers takes {overhead:.2f}× the "
            f"in-process wall time. Going from 1 to 2 Ray workers runs at {efficiency:.0%} efficiency; "
            f"projected, each added {NODE_CPUS}-CPU node adds about {per_node:,.0f} values/s of this mix "
            f"({NODE_CPUS} one-CPU workers at the measured one-worker rate times that efficiency), "
            "as long as shared storage keeps up.",
        ],
    )


def _row(name: str, run: dict[str, float], base: dict[str, float], values: int, pairs: int) -> list[str]:
    return [name, f"{run['start']:.1f}", f"{run['encode']:.1f}", f"{values / run['encode']:.0f}",
            f"{base['encode'] / run['encode']:.2f}×", f"{run['statistics']:.2f}", f"{pairs / run['statistics']:,.0f}",
            f"{base['statistics'] / run['statistics']:.2f}×"]  # fmt: skip


def _synthetic_pairs(folder: Path, n: int) -> dict[str, Shards]:
    """``n`` seeded row-paired pairs (384-d, 1280-d, a planted linear relation) as shards."""
    rng = np.random.default_rng(0)
    relation = rng.standard_normal((384, 1280)).astype(np.float32) / 20

    def blocks(modality: str):
        for start in range(0, n, 32_768):
            block = np.random.default_rng(start).standard_normal((min(32_768, n - start), 384), dtype=np.float32)
            yield block if modality == "text" else block @ relation

    return {m: write_shards(folder / m, blocks(m)) for m in ("text", "image")}


if __name__ == "__main__":
    main()
