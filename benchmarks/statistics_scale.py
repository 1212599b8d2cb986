"""A fit over 10 million pairs in bounded memory: additive statistics accumulated batch by batch.

Synthetic pairs of minilm and EfficientNet shape (384-d text, 1280-d image) with a planted
linear relation (a shared 64-d latent, mapped by fixed random matrices, plus noise), generated
in seeded batches of 32,768 rows (the row block in which products are taken) and never held
together:

1. ``cca-256-weighted`` and ``lstsq-t2i`` fitted from the sum of the batches' statistics over 10M
   pairs: wall time, rows/s, peak RSS of this process (measured before anything else runs in it);
2. at 1M pairs, the same streamed fits against ``fit`` on the 1M pairs held in memory: the
   largest relative difference of their held-out scores, and R@10 both ways on 1,000 held-out pairs.

    .venv/bin/python benchmarks/statistics_scale.py [--pairs 10000000]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xmodal.align import Aligner
from xmodal.align.linalg import PRODUCT_BLOCK_ROWS
from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.evaluate import evaluate_bidirectional

BATCH = PRODUCT_BLOCK_ROWS  # 32,768 rows: fit on arrays in memory takes its products in such blocks
LATENT, TEXT, IMAGE = 64, 384, 1280
NOISE = 4.0  # noise standard deviation per dimension, against a unit-variance planted signal
ALIGNERS = ("cca-256-weighted", "lstsq-t2i")


def batches(n_pairs: int, seed: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """``n_pairs`` planted pairs in batches of :data:`BATCH` (batch ``i``'s rows seeded by
    ``seed + i``; the planted maps are always the same)."""
    maps = np.random.default_rng(0)
    to_text = maps.standard_normal((LATENT, TEXT), dtype=np.float32) / np.sqrt(LATENT)  # unit variance
    to_image = maps.standard_normal((LATENT, IMAGE), dtype=np.float32) / np.sqrt(LATENT)
    for i, start in enumerate(range(0, n_pairs, BATCH)):
        rng = np.random.default_rng(seed + i)
        rows = min(BATCH, n_pairs - start)
        latent = rng.standard_normal((rows, LATENT), dtype=np.float32)
        text = latent @ to_text + NOISE * rng.standard_normal((rows, TEXT), dtype=np.float32)
        image = latent @ to_image + NOISE * rng.standard_normal((rows, IMAGE), dtype=np.float32)
        yield {"text": text, "image": image}


def streamed(n_pairs: int) -> tuple[dict[str, Aligner], float]:
    """Each aligner fitted from the sum of the batches' statistics (one solve at the end; the
    aligners preprocess alike, so one sum serves both), and the seconds it took, generating the
    batches included."""
    aligners = {name: make_aligner(name) for name in ALIGNERS}
    started = time.perf_counter()
    total = None
    for batch in batches(n_pairs):
        found = aligners[ALIGNERS[0]].statistics(batch)
        total = found if total is None else total + found
    assert total is not None
    for aligner in aligners.values():
        aligner.fit_statistics(total)
    return aligners, time.perf_counter() - started


def scores(aligner: Aligner, held: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine scores of the held-out texts against the held-out images in the shared space."""
    text, image = (aligner.transform(held[m], m) for m in ("text", "image"))
    return (text / np.linalg.norm(text, axis=1, keepdims=True)) @ (
        image / np.linalg.norm(image, axis=1, keepdims=True)
    ).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--compare", type=int, default=1_000_000, help="pairs of the in-memory comparison")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    _, seconds = streamed(args.pairs)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(
        f"{args.pairs} pairs streamed in {seconds:.0f} s ({args.pairs / seconds:,.0f} rows/s), peak RSS {peak_gb:.2f} GB"
    )

    held = next(batches(1_000, seed=10**6))
    stream, _ = streamed(args.compare)
    pairs = {"text": np.empty((args.compare, TEXT), np.float32), "image": np.empty((args.compare, IMAGE), np.float32)}
    for i, batch in enumerate(batches(args.compare)):  # filled in place: one copy of the 1M pairs
        for m, x in batch.items():
            pairs[m][i * BATCH : i * BATCH + len(x)] = x
    ids = np.arange(1_000)
    rows = [[f"{args.pairs:,}", "all", "streamed: statistics of batches of 32,768, summed", f"{seconds:.0f}",
             f"{args.pairs / seconds:,.0f}", f"{peak_gb:.2f}", "", ""]]  # fmt: skip
    for name in ALIGNERS:
        started = time.perf_counter()
        memory = make_aligner(name).fit(pairs)
        memory_seconds = time.perf_counter() - started
        reference = scores(memory, held)
        difference = float(np.abs(scores(stream[name], held) - reference).max() / np.abs(reference).max())
        for label, aligner, took in (
            ("streamed", stream[name], ""),
            ("in memory (fit)", memory, f"{memory_seconds:.0f}"),
        ):
            metrics = evaluate_bidirectional(*(aligner.transform(held[m], m) for m in ("text", "image")), ids, ids)
            recall = f"{metrics['t2i/R@10']:.2f} / {metrics['i2t/R@10']:.2f}"
            shown = f"{difference:.2g}" if label == "streamed" else "0 (reference)"
            rows.append([f"{args.compare:,}", name, label, took, "", "", recall, shown])
            print(" | ".join(rows[-1]), flush=True)
    del pairs

    write_section(
        args.results,
        "statistics-scale",
        f"Statistics at scale: {args.pairs:,} synthetic pairs (384-d × 1280-d, planted relation) in bounded memory",
        shlex.join(["python", "benchmarks/statistics_scale.py", *sys.argv[1:]]),
        markdown_table(
            [
                "pairs",
                "aligner",
                "fit",
                "seconds",
                "rows/s",
                "peak RSS GB",
                "R@10 t2i / i2t (1,000 held out)",
                "held-out scores: largest relative difference",
            ],
            rows,
        ),
        "peak RSS of the process after the streamed fit, before the in-memory comparison ran",
        notes=[
            "The scores (cosines of 1,000 held-out texts against 1,000 held-out images in the shared space)",
            "compare maps without depending on the arbitrary basis CCA picks among directions of equal",
            "correlation (the noise directions beyond the planted 64).",
        ],
    )


if __name__ == "__main__":
    main()
