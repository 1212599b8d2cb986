"""IVF-PQ beyond memory: build, disk, RAM, recall@10 and queries/s against exact search, in one run.

Data (synthetic, seeded, embedding-like): ``--n`` gallery rows and ``--queries`` held-out query
rows of dimension ``--dim``, drawn from one mixture:

- a random rotation ``Q`` and a power-law spectrum of variances ``λ_j ∝ 1/j`` (j = 1..dim:
  about 23 effective dimensions at 256-d, like text and image embeddings, not isotropic noise);
- 200 topics, centres ``Q(√λ ⊙ z)``; 20,000 clusters, each in a random topic at an offset of
  0.6 × that scale, weighted by a power law (``∝ 1/√rank``, shuffled) and with its own spread
  (0.4–0.9 × that scale);
- a row = its cluster's centre + spread × ``Q(√λ ⊙ z)`` + a mean direction shared by all rows
  (norm 0.8: a random pair has a cosine of about 0.3, as embeddings do), L2-normalised.

Gallery and queries are independent draws (seeds 1 and 2; the mixture has seed 0), generated in
blocks of 262,144 rows and written as shards with ``ShardWriter`` under ``--work``.

Each step runs in its own process (its peak RSS is its own; mapped file pages it touched count):

1. ``generate``: the shards and the queries;
2. ``exact``: exact top-10 of every query by :func:`xmodal.retrieval.topk.stream_topk` over the
   shards (batched: all queries in one pass), and by FAISS ``knn`` (``IndexFlatIP``'s kernel) over
   each memory-mapped shard with merged top-k; one-at-a-time: ``--single`` queries, each alone;
3. ``build``: :meth:`xmodal.search.ivfpq.IvfPqIndex.build` with the parameters of
   :func:`~xmodal.search.ivfpq.choose_params` (train, fill, merge timed);
4. ``search``: load the index (lists memory-mapped), one warm-up pass, then per ``nprobe``/
   ``rerank`` setting: every query alone (one-at-a-time) and all in one call (batched),
   recall@10 against the exact top-10 of step 2.

FAISS and BLAS use ``--threads`` threads (2: the machine's cores); idle OpenMP threads sleep
(``OMP_WAIT_POLICY=PASSIVE``: on shared cores, spinning threads made k-means 3-5 times slower).
The vectors are in the page cache for both exact and IVF-PQ search (the exact pass reads them
first). The vectors and the index are deleted at the end (``--keep`` keeps them). Run from the
repository root::

    .venv/bin/python benchmarks/ivfpq.py                   # 5,000,000 x 256, ~25 min on 2 cores
    .venv/bin/python benchmarks/ivfpq.py --n 300000 --results /tmp/r.md   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

DIM, BLOCK = 256, 262_144
TOPICS, CLUSTERS = 200, 20_000
K = 10


def world(dim: int) -> tuple:
    """The mixture (seed 0): rotation, spectrum, cluster centres, weights, spreads, mean."""
    import numpy as np

    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    scale = np.sqrt(1.0 / np.arange(1, dim + 1))
    scale = (scale / np.sqrt((scale**2).sum())).astype(np.float32)  # total variance 1

    def draw(n: int) -> np.ndarray:
        return (rng.standard_normal((n, dim), dtype=np.float32) * scale) @ rotation.T

    topics = draw(TOPICS)
    centres = topics[rng.integers(TOPICS, size=CLUSTERS)] + 0.6 * draw(CLUSTERS)
    weights = 1 / np.sqrt(np.arange(1, CLUSTERS + 1))
    weights = rng.permutation(weights / weights.sum())
    spread = rng.uniform(0.4, 0.9, size=CLUSTERS).astype(np.float32)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean *= 0.8 / np.linalg.norm(mean)
    return rotation, scale, centres + mean, weights, spread


def draw_rows(n: int, seed: int, dim: int) -> Iterator:
    """``n`` unit rows of the mixture, in blocks of :data:`BLOCK` rows."""
    import numpy as np

    rotation, scale, centres, weights, spread = world(dim)
    rng = np.random.default_rng(seed)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        cluster = rng.choice(CLUSTERS, size=m, p=weights)
        noise = (rng.standard_normal((m, dim), dtype=np.float32) * scale) @ rotation.T
        x = centres[cluster] + spread[cluster, None] * noise
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, mapped file pages it touched included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


class AnonymousPeak:
    """Peak anonymous resident memory (``RssAnon``: the heap, not pages of mapped files, which
    the kernel may drop) of this process, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def stop_mb(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.now()) / 2**20


def step_generate(args: argparse.Namespace) -> dict:
    import numpy as np

    from xmodal.store.shards import ShardWriter

    started = time.perf_counter()
    writer = ShardWriter(args.work / "vectors", args.dim, about={"generator": "benchmarks/ivfpq.py", "n": args.n})
    for block in draw_rows(args.n, 1, args.dim):
        writer.write(block)
    queries = np.concatenate(list(draw_rows(args.queries, 2, args.dim)))
    np.save(args.work / "queries.npy", queries)
    return {"seconds": time.perf_counter() - started, "shards": writer.n_shards}


def step_exact(args: argparse.Namespace) -> dict:
    import faiss
    import numpy as np

    from xmodal.retrieval.topk import stream_topk
    from xmodal.store.shards import Shards

    shards = Shards(args.work / "vectors")
    queries = np.load(args.work / "queries.npy")
    single = queries[: args.single]
    stream_topk(single[:1], shards.batches(verify=False), K)  # warm-up: the rows into the page cache

    def faiss_exact(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by FAISS's flat inner-product kernel over each mapped shard, merged."""
        best = None
        for i in range(shards.n_shards):
            scores, ids = faiss.knn(q, shards.shard(i), K, metric=faiss.METRIC_INNER_PRODUCT)
            ids += shards.offsets[i]
            if best is not None:
                scores, ids = np.concatenate([best[0], scores], 1), np.concatenate([best[1], ids], 1)
                order = np.lexsort((ids, -scores), axis=1)[:, :K]
                scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
            best = scores, ids
        assert best is not None
        return best

    figures: dict = {}
    started = time.perf_counter()
    _, truth = stream_topk(queries, shards.batches(verify=False), K)
    figures["stream_batched_qps"] = len(queries) / (time.perf_counter() - started)
    started = time.perf_counter()
    _, faiss_ids = faiss_exact(queries)
    figures["faiss_batched_qps"] = len(queries) / (time.perf_counter() - started)
    figures["faiss_agrees"] = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(faiss_ids, truth)]))
    started = time.perf_counter()
    for q in single:
        stream_topk(q[None], shards.batches(verify=False), K)
    figures["stream_single_qps"] = len(single) / (time.perf_counter() - started)
    started = time.perf_counter()
    for q in single:
        faiss_exact(q[None])
    figures["faiss_single_qps"] = len(single) / (time.perf_counter() - started)
    np.save(args.work / "truth.npy", truth)
    return figures


def step_build(args: argparse.Namespace) -> dict:
    from xmodal.search.ivfpq import IvfPqIndex, choose_params
    from xmodal.store.shards import Shards

    shards = Shards(args.work / "vectors")
    params = choose_params(len(shards), shards.dim, opq=args.opq)
    started = time.perf_counter()
    index = IvfPqIndex.build(shards, args.work / "index", params)
    return {"seconds": time.perf_counter() - started, **index.timings, "params": params.__dict__}


def step_search(args: argparse.Namespace) -> dict:
    import numpy as np

    from xmodal.search.ivfpq import IvfPqIndex
    from xmodal.store.shards import Shards

    started = time.perf_counter()
    index = IvfPqIndex.load(args.work / "index", Shards(args.work / "vectors"))
    load_s = time.perf_counter() - started
    queries, truth = np.load(args.work / "queries.npy"), np.load(args.work / "truth.npy")
    index.search(queries, K)  # warm-up: lists and candidate rows into the page cache
    rows = []
    for setting in args.settings:
        nprobe, rerank = (int(v) for v in setting.split(":"))
        started = time.perf_counter()
        _, batched = index.search(queries, K, nprobe=nprobe, rerank=rerank)
        batched_qps = len(queries) / (time.perf_counter() - started)
        started = time.perf_counter()
        single = np.concatenate([index.search(q[None], K, nprobe=nprobe, rerank=rerank)[1] for q in queries])
        single_qps = len(queries) / (time.perf_counter() - started)
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(single, truth)]))
        assert np.array_equal(single, batched), "one-at-a-time and batched searches disagree"
        rows.append({"nprobe": nprobe, "rerank": rerank, "recall": recall, "single_qps": single_qps,
                     "batched_qps": batched_qps})  # fmt: skip
        print(f"  nprobe {nprobe} rerank {rerank}: recall@10 {recall:.3f}, {single_qps:,.0f} q/s alone, "
              f"{batched_qps:,.0f} q/s batched", file=sys.stderr, flush=True)  # fmt: skip
    return {"load_s": load_s, "rows": rows, "default": [index.params.nprobe, index.params.rerank]}


STEPS = {"generate": step_generate, "exact": step_exact, "build": step_build, "search": step_search}


def run_step(name: str, argv: list[str]) -> dict:
    """Run one step in a fresh process; its figures with its peak RSS."""
    print(f"{name} ...", flush=True)
    out = subprocess.run([sys.executable, __file__, "--step", name, *argv], check=True, capture_output=False,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{name}: {json.dumps(figures)[:400]}", flush=True)
    return figures


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5_000_000, help="gallery rows")
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--single", type=int, default=30, help="queries searched one at a time by exact search")
    parser.add_argument("--threads", type=int, default=2, help="FAISS and BLAS threads")
    parser.add_argument("--opq", action="store_true", help="OPQ rotation before the PQ")
    parser.add_argument(
        "--settings", nargs="+", default=["16:256", "32:256", "64:64", "64:256", "64:1024", "128:256"],
        help="NPROBE:RERANK pairs to measure",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path(".cache/bench-ivfpq"))
    parser.add_argument("--keep", action="store_true", help="keep the vectors and index (deleted by default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"), help="its section is replaced")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:
        os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # shared cores: spinning OpenMP threads slow k-means 3-5x
        import faiss

        faiss.omp_set_num_threads(args.threads)
        anonymous = AnonymousPeak()
        figures = STEPS[args.step](args)
        print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb(), "peak_anon_mb": anonymous.stop_mb()}))
        return

    argv = sys.argv[1:]
    env_note = f"{args.threads} threads"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        figures = {name: run_step(name, argv) for name in STEPS}
        figures["disk"] = {
            "vectors": folder_bytes(args.work / "vectors"),
            "index": {f.name: f.stat().st_size for f in (args.work / "index").iterdir()},
        }
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    write_results(args, figures, env_note)


def write_results(args: argparse.Namespace, figures: dict, env_note: str) -> None:
    import faiss

    from xmodal.bench.results import markdown_table, write_section

    exact = figures["exact"]
    single_base = max(exact["stream_single_qps"], exact["faiss_single_qps"])
    batched_base = max(exact["stream_batched_qps"], exact["faiss_batched_qps"])
    build, search = figures["build"], figures["search"]
    p = build["params"]
    index_mb = sum(figures["disk"]["index"].values()) / 2**20
    files = ", ".join(f"{name} {size / 2**20:,.1f} MB" for name, size in figures["disk"]["index"].items())
    rows = [
        ["exact, `stream_topk` (numpy)", "", "1.000", f"{exact['stream_single_qps']:.2f}", "",
         f"{exact['stream_batched_qps']:,.1f}", ""],
        ["exact, FAISS `knn` per shard", "", f"{exact['faiss_agrees']:.3f}", f"{exact['faiss_single_qps']:.2f}", "",
         f"{exact['faiss_batched_qps']:,.1f}", ""],
    ]  # fmt: skip
    for r in search["rows"]:
        default = " (default)" if [r["nprobe"], r["rerank"]] == search["default"] else ""
        rows.append([f"IVF-PQ{default}", f"nprobe {r['nprobe']}, rerank {r['rerank']}", f"{r['recall']:.3f}",
                     f"{r['single_qps']:,.0f}", f"{r['single_qps'] / single_base:,.0f}x",
                     f"{r['batched_qps']:,.0f}", f"{r['batched_qps'] / batched_base:,.1f}x"])  # fmt: skip
    table = markdown_table(
        ["search", "setting", "recall@10", "q/s one at a time", "vs exact", "q/s batched", "vs exact"], rows
    )
    steps = (("generate", "generate"), ("exact search", "exact"), ("build", "build"), ("IVF-PQ search", "search"))
    memory = ", ".join(
        f"{name} {figures[step]['peak_rss_mb']:,.0f} / {figures[step]['peak_anon_mb']:,.0f} MB" for name, step in steps
    )
    default = next((r for r in search["rows"] if [r["nprobe"], r["rerank"]] == search["default"]), None)
    met = [r for r in search["rows"] if r["recall"] >= 0.95 and r["single_qps"] >= 20 * single_base]
    acceptance = (
        f"Acceptance (recall@10 ≥ 0.95 at ≥ 20× the one-at-a-time q/s of exact search): met by {len(met)} of "
        f"{len(search['rows'])} settings"
    )
    if default is not None:
        acceptance += f"; the default: recall@10 {default['recall']:.3f} at {default['single_qps'] / single_base:,.0f}×"
    notes = [
        f"- {acceptance}.",
        f"- Index: n_lists {p['n_lists']}, m {p['m']} × {p['bits']} bits, OPQ {'on' if p['opq'] else 'off'}, "
        f"trained on {p['train_rows']:,} rows. Build {build['seconds']:.0f} s: train {build['train_s']:.0f} s, "
        f"fill {build['fill_s']:.0f} s, merge {build['merge_s']:.0f} s; load {search['load_s']:.2f} s.",
        f"- Disk: vectors {figures['disk']['vectors'] / 2**20:,.0f} MB (shards), index {index_mb:,.0f} MB ({files}).",
        f"- Memory, each step in its own process, peak RSS / peak anonymous RSS (the heap, sampled every 20 ms): "
        f"{memory}. RSS counts the pages of memory-mapped files a process has read: in build and search, pages of "
        "the vectors (training sample, re-ranked candidates), page cache that the kernel drops under pressure.",
        f"- vs exact: over the faster exact search of the same run ({single_base:.2f} q/s one at a time, "
        f"{batched_base:,.1f} batched). One at a time: exact over the first {args.single} queries, IVF-PQ over all "
        f"{args.queries:,}; recall@10: share of the exact top-10 ids (of `stream_topk`) in the IVF-PQ top 10.",
        "- Data: a seeded mixture of 20,000 clusters in 200 topics with a power-law spectrum (see the script's "
        "docstring), unit rows; queries are held-out draws of the same mixture.",
    ]
    print()
    write_section(
        args.results,
        "ivfpq",
        f"IVF-PQ beyond memory: {args.n:,} synthetic {args.dim}-d vectors, {args.queries:,} queries, k=10",
        shlex.join(["python", "benchmarks/ivfpq.py", *sys.argv[1:]]),
        table,
        f"faiss {faiss.__version__}, {env_note}, OMP_WAIT_POLICY=PASSIVE · one run",
        notes=notes,
        echo=True,
    )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **figures}, indent=1))


if __name__ == "__main__":
    main()
