"""ANN benchmark: the FAISS indexes of ``xmodal.index`` against exact search, in one run.

Data (synthetic, seeded): ``--n`` gallery vectors and ``--queries`` held-out queries of
dimension ``--dim``, clustered like embeddings are: each vector is one of ``--clusters``
random centres, plus a point of a shared 48-d latent subspace, plus isotropic noise,
L2-normalised (so inner product = cosine, as in an index).

For the exact ``IndexFlatIP`` and each ANN kind (``hnsw``, ``ivf``, built by
:func:`xmodal.index.make_faiss_index` with the index's parameters) it measures build
seconds, the index's size in memory (its serialised bytes: vectors + graph or lists), queries/s of one
batched search of every query (k=10, FAISS's default threads), recall@10 against the exact
top 10 (share of the exact top-10 ids the ANN top 10 holds), and the speed-up in
queries/s over exact search. Peak RSS of the process is reported at the end.
Run from the repository root::

    .venv/bin/python benchmarks/ann.py                 # 1,000,000 x 256
    .venv/bin/python benchmarks/ann.py --n 100000      # a quick run
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from xmodal.bench.results import machine_description, markdown_table, write_section
from xmodal.search.storage import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    IVF_PROBE_SHARE,
    faiss_search,
    make_faiss_index,
)

K = 10
LATENT_DIM = 48


def clustered_vectors(
    n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, chunk: int = 100_000
) -> np.ndarray:
    """``n`` unit vectors: a random centre + a latent-subspace point + noise (built in chunks)."""
    basis = np.random.default_rng(1).standard_normal((LATENT_DIM, dim)).astype(np.float32) / np.sqrt(dim)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(len(centres), size=m)]
        x += 0.7 * rng.standard_normal((m, LATENT_DIM), dtype=np.float32) @ basis
        x += 0.15 / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(
    kind: str, gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray | None, ef_search: list[int]
) -> list[dict]:
    """Build one index, then search every query once (per efSearch for HNSW): rows of figures
    (with the top-k ids under ``"ids"``)."""
    started = time.perf_counter()
    index = make_faiss_index(gallery, kind)
    build = time.perf_counter() - started
    size = faiss.serialize_index(index).nbytes
    rows = []
    for ef in ef_search if kind == "hnsw" else [0]:
        if ef:
            index.hnsw.efSearch = ef
        faiss_search(index, queries[:10], K)  # warm-up
        started = time.perf_counter()
        _, ids = faiss_search(index, queries, K)
        seconds = time.perf_counter() - started
        recall = 1.0 if truth is None else float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)]))
        params = {
            "flat": "exact inner product",
            "hnsw": f"M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}, efSearch={ef}",
            "ivf": f"IVFFlat, nlist={getattr(index, 'nlist', 0)}, nprobe={getattr(index, 'nprobe', 0)} (1/{IVF_PROBE_SHARE})",
        }[kind]
        rows.append(
            {
                "kind": kind,
                "params": params,
                "build_s": build,
                "size_mb": size / 2**20,
                "qps": len(queries) / seconds,
                "recall@10": recall,
                "ids": ids,
            }
        )
    del index
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--kinds", nargs="+", default=["hnsw"], choices=["hnsw", "ivf"])
    parser.add_argument(
        "--ef-search", nargs="+", type=int, default=[64, 128, 256], help="HNSW efSearch values to measure"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"), help="its section is replaced")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    started = time.perf_counter()
    gallery = clustered_vectors(args.n, args.dim, centres, rng)
    queries = clustered_vectors(args.queries, args.dim, centres, rng)
    print(
        f"data: {args.n:,} x {args.dim} gallery, {args.queries:,} queries, {args.clusters:,} clusters "
        f"({time.perf_counter() - started:.1f} s); {machine_description()}, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads",
        flush=True,
    )

    rows = measure("flat", gallery, queries, None, args.ef_search)
    exact = rows[0]
    print(f"flat: {exact['qps']:,.0f} queries/s", flush=True)
    for kind in args.kinds:
        rows += measure(kind, gallery, queries, exact["ids"], args.ef_search)
        for row in rows[-len(args.ef_search) if kind == "hnsw" else -1 :]:
            print(
                f"{kind}: built in {row['build_s']:.0f} s, {row['params']}: {row['qps']:,.0f} queries/s, "
                f"recall@10 {row['recall@10']:.3f}",
                flush=True,
            )
    for row in rows:
        row["speedup"] = row["qps"] / exact["qps"]
        del row["ids"]
    table = markdown_table(
        ["index", "parameters", "build s", "index MB", "queries/s", "recall@10", "speed-up"],
        (
            [
                r["kind"],
                r["params"],
                f"{r['build_s']:.1f}",
                f"{r['size_mb']:,.0f}",
                f"{r['qps']:,.0f}",
                f"{r['recall@10']:.3f}",
                f"{r['speedup']:.1f}x",
            ]
            for r in rows
        ),
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    memory = f"peak RSS of the process: {peak:,.0f} MB (data {gallery.nbytes / 2**20:,.0f} MB)"
    print(f"\n{table}\n\n{memory}")
    write_section(
        args.results,
        "ann",
        f"ANN index at scale: {args.n:,} synthetic {args.dim}-d vectors, {args.queries:,} queries, k=10",
        shlex.join(["python", "benchmarks/ann.py", *sys.argv[1:]]),
        table,
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads · one run",
        notes=[
            memory + ". Speed-up: queries/s over exact `IndexFlatIP` in the same run; recall@10: share of",
            "the exact top-10 ids in the ANN top 10. Data: clustered unit vectors (see the script's docstring).",
        ],
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: v for k, v in vars(args).items() if k not in ("json", "results")},
                    "rows": rows,
                    "peak_rss_mb": peak,
                    "machine": machine_description(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
