"""Load test of the search service: concurrent text queries against a real uvicorn on loopback,
with the service answering them one at a time, then batching them, in one run.

For each of the two, starts ``xmodal serve INDEX --no-batch``, then ``--batch`` (the default;
uvicorn, one torch thread) in a child
process on a free loopback port, waits for ``/health``, sends 5 warm-up queries, then runs
``--clients`` concurrent clients (each its own HTTP connection) that each send ``--queries``
text queries one after another: distinct Flickr8k captions taken from the index's items,
``GET /search?q=...&k=10``, the same for both. The latency of a request is measured by its
client from sending to the full JSON answer, so it includes encoding the text (minilm), the
aligner, the FAISS search and the HTTP round trip. Reports errors (any non-200 answer or
failed request), p50 / p90 / p99 / max latency, throughput, and batched / one-at-a-time
throughput. Run from the repository root after ``make serve`` has built the index once::

    .venv/bin/python benchmarks/load.py                       # 32 clients x 50 queries
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

from xmodal.bench.results import machine_description, markdown_table, write_section
from xmodal.search.storage import current_generation

DEFAULT_INDEX = Path(".xmodal/serve/flickr8k-test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer {url}/health within {timeout:.0f} s")


async def client(url: str, queries: list[str], latencies: list[float], errors: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for q in queries:
            started = time.perf_counter()
            try:
                response = await http.get("/search", params={"q": q, "k": 10})
                if response.status_code != 200 or len(response.json()["results"]) != 10:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)


async def run(url: str, batches: list[list[str]]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(*(client(url, batch, latencies, errors) for batch in batches))
    return latencies, errors, time.perf_counter() - started


def measure(
    args: argparse.Namespace, batch: bool, warm_up: list[str], batches: list[list[str]]
) -> tuple[list[float], list[str], float, bool]:
    """``(latencies, errors, seconds, alive after)`` of the clients against a fresh server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "xmodal"), "serve", str(args.index), "--port", str(port)]
    command += ["--batch" if batch else "--no-batch", *(["--models", str(args.models)] if args.models else [])]
    server = subprocess.Popen(command)
    try:
        wait_until_up(url, server)
        for q in warm_up:
            httpx.get(f"{url}/search", params={"q": q, "k": 10}, timeout=60).raise_for_status()
        latencies, errors, seconds = asyncio.run(run(url, batches))
        alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    return latencies, errors, seconds, alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--index", type=Path, default=DEFAULT_INDEX, help="index directory (default: the one `make serve` builds)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--queries", type=int, default=50, help="queries per client")
    parser.add_argument("--models", type=Path, help="models folder of the server (--models of xmodal serve)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"), help="its section is replaced")
    args = parser.parse_args()
    if not (args.index / "manifest.json").is_file():
        raise SystemExit(f"no index at {args.index}: run `make serve` once (or pass --index)")

    captions = [
        c
        for row in pq.read_table(current_generation(args.index) / "items.parquet", columns=["captions"])
        .column("captions")
        .to_pylist()
        for c in row
    ]
    needed = args.clients * args.queries
    if len(captions) < needed + 5:
        raise SystemExit(f"the index has {len(captions)} captions; {needed + 5} are needed")
    batches = [captions[5 + i * args.queries : 5 + (i + 1) * args.queries] for i in range(args.clients)]

    load = "load average before: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows, rates, failures = [], [], []
    for name, batch in (("one at a time", False), ("batched", True)):
        latencies, errors, seconds, alive = measure(args, batch, captions[:5], batches)
        ms = np.array(latencies) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        rates.append(len(ms) / seconds)
        latency = [f"{v:.0f}" for v in (p50, p90, p99, ms.max())]
        rows.append([name, args.clients, len(ms), len(errors), *latency, f"{rates[-1]:.1f}"])
        print(f"{name}: {len(ms)} requests in {seconds:.1f} s; errors: {len(errors)}; server alive after: {alive}")
        failures += [f"{name}: {e}" for e in errors[:5]] + ([] if alive else [f"{name}: the server died"])
    ratio = f"batched / one at a time: {rates[1] / rates[0]:.2f}x the requests per second"
    table = markdown_table(
        ["queries", "clients", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests/s"], rows
    )
    print(f"{machine_description()}; server and clients on the same machine, loopback; index {args.index}")
    print(f"{load}\n\n{table}\n\n{ratio}")
    write_section(
        args.results,
        f"load {args.clients}",
        f"Search service under load: {args.clients} concurrent clients × {args.queries} text queries (Flickr8k test index)",
        shlex.join(["python", "benchmarks/load.py", *sys.argv[1:]]),
        table,
        f"{load} · {ratio}",
        notes=[
            "The service of `xmodal serve` (uvicorn, one torch thread) and the clients share the machine, over "
            "loopback; each request encodes its text (minilm), maps it with the index's aligner and searches the "
            "1,000 images.",
            "One at a time: each request encodes and searches alone (`create_app(batch=False)`); batched: the "
            "queries waiting while a batch runs are encoded and searched together (the default).",
        ],
        announce=False,
    )
    for failure in failures:
        print("error:", failure)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
