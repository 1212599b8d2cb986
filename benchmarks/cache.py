"""The per-item embedding cache on real images: what a grown dataset and a killed encode cost.

1. Encode 1,000 Flickr8k train images (efficientnet-lite0, ONNX) into an empty cache, then the
   same 1,000 plus 10 more: only the 10 are encoded.
2. Encode 2,000 images in a child process with chunks of 256 and ``kill -9`` it once some
   chunks are on disk; run the same encode again: only the values of no whole chunk are
   encoded, and the rows equal those of an uninterrupted encode into another empty cache.

Hits and misses count values. Each run uses fresh cache folders under ``--work``.

    .venv/bin/python benchmarks/cache.py
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from xmodal.bench.results import markdown_table, write_section
from xmodal.core.config import DEFAULT_IMAGE_ENCODER, default_models_dir
from xmodal.data import load_flickr8k
from xmodal.encoders import get_encoder
from xmodal.store import EmbeddingStore, item_keys

CHILD = """
import sys
from xmodal.encoders import get_encoder
from xmodal.store import EmbeddingStore, item_keys
cache, models, chunk, *paths = sys.argv[1:]
EmbeddingStore(cache, chunk_rows=int(chunk)).embed(get_encoder("{encoder}", models_dir=models), paths)
"""


def embed(cache: Path, models: Path, paths: list[str], chunk_rows: int = 4096) -> tuple[np.ndarray, int, int, float]:
    """Rows, hits, misses and seconds of one encode into ``cache``."""
    store = EmbeddingStore(cache, chunk_rows=chunk_rows)
    started = time.perf_counter()
    rows = store.embed(get_encoder(DEFAULT_IMAGE_ENCODER, models_dir=models), paths)
    return rows, store.hits, store.misses, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/xmodal/bench-cache"))
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    paths = [item.values["image"][0] for item in load_flickr8k(args.data).split("train").items[:2010]]
    get_encoder(DEFAULT_IMAGE_ENCODER, models_dir=args.models).encode(paths[:1])  # ONNX export, not timed
    rows = []

    def row(step: str, asked: int, hits: int, misses: int, seconds: float) -> None:
        rows.append([step, f"{asked:,}", f"{hits:,}", f"{misses:,}", f"{seconds:.1f}"])
        print(" | ".join(rows[-1]), flush=True)

    grown = args.work / "grown"
    _, hits, misses, seconds = embed(grown, args.models, paths[:1000])
    row("1,000 images, empty cache", 1000, hits, misses, seconds)
    _, hits, misses, seconds = embed(grown, args.models, paths[:1010])
    row("the same 1,000 + 10 new", 1010, hits, misses, seconds)

    killed, clean, chunk = args.work / "killed", args.work / "clean", 256
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(encoder=DEFAULT_IMAGE_ENCODER), str(killed),
                              str(args.models or default_models_dir()), str(chunk), *paths[10:2010]])  # fmt: skip
    folder = killed / "embeddings" / DEFAULT_IMAGE_ENCODER
    while child.poll() is None and len(list(folder.glob("*/*.npz"))) < 3:
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    written = len(list(folder.glob("*/*.npz")))
    resumed, hits, misses, seconds = embed(killed, args.models, paths[10:2010], chunk)
    row(f"2,000 images after `kill -9` with {written} chunks of {chunk} on disk", 2000, hits, misses, seconds)
    reference, clean_hits, clean_misses, seconds = embed(clean, args.models, paths[10:2010], chunk)
    row("2,000 images, uninterrupted, empty cache", 2000, clean_hits, clean_misses, seconds)
    same = np.array_equal(resumed, reference)
    print(f"resumed rows equal the uninterrupted ones: {same}")

    write_section(
        args.results,
        "cache-per-item",
        f"Embedding cache per item: growing a dataset, resuming a killed encode ({DEFAULT_IMAGE_ENCODER}, ONNX, Flickr8k train images)",
        shlex.join(["python", "benchmarks/cache.py", *sys.argv[1:]]),
        markdown_table(["step", "values asked", "cache hits", "encoded", "seconds"], rows),
        notes=[f"After the kill, the resumed rows equal an uninterrupted encode's: **{'yes' if same else 'NO'}** "
               f"(exact equality; {written} whole chunks of {chunk} were on disk, the chunk being written was lost). "
               "Hits count values not encoded: a file whose bytes repeat another's is encoded once."],
    )  # fmt: skip
    encoder = get_encoder(DEFAULT_IMAGE_ENCODER, models_dir=args.models)
    distinct = len(set(item_keys(encoder.cache_key, paths[10:2010], "image")[0]))  # identical files count once
    if misses != distinct - written * chunk or not same:
        raise SystemExit(f"expected {distinct - written * chunk} values encoded after the kill, got {misses}")


if __name__ == "__main__":
    main()
