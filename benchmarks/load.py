"""Load test of the search service: concurrent text queries against a real uvicorn on loopback.

Starts ``xmodal serve INDEX`` in a child process on a free loopback port, waits for
``/health``, sends 5 warm-up queries, then runs ``--clients`` concurrent clients (each its
own HTTP connection) that each send ``--queries`` text queries one after another: distinct
Flickr8k captions taken from the index's items, ``GET /search?q=...&k=10``. The latency of
a request is measured by its client from sending to the full JSON answer, so it includes
encoding the text (minilm), the aligner, the FAISS search and the HTTP round trip.
Reports errors (any non-200 answer or failed request), p50 / p90 / p99 / max latency and
throughput. Run from the repository root after ``make serve`` has built the index once::

    .venv/bin/python benchmarks/load.py                       # 32 clients x 50 queries
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq

from xmodal.bench.results import machine_description, markdown_table, replace_section, script_section

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
        for row in pq.read_table(args.index / "items.parquet", columns=["captions"]).column("captions").to_pylist()
        for c in row
    ]
    needed = args.clients * args.queries
    if len(captions) < needed + 5:
        raise SystemExit(f"the index has {len(captions)} captions; {needed + 5} are needed")
    batches = [captions[5 + i * args.queries : 5 + (i + 1) * args.queries] for i in range(args.clients)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "xmodal.cli", "serve", str(args.index), "--port", str(port)]
    server = subprocess.Popen(command + (["--models", str(args.models)] if args.models else []))
    try:
        wait_until_up(url, server)
        for q in captions[:5]:
            httpx.get(f"{url}/search", params={"q": q, "k": 10}, timeout=60).raise_for_status()
        latencies, errors, seconds = asyncio.run(run(url, batches))
        alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = np.array(latencies) * 1000
    print(f"{machine_description()}; server and clients on the same machine, loopback; index {args.index}")
    print(
        f"{args.clients} concurrent clients x {args.queries} text queries = {len(ms)} requests in {seconds:.1f} s; "
        f"errors: {len(errors)}; server alive after: {alive}\n"
    )
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    table = markdown_table(
        ["clients", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests/s"],
        [
            [
                args.clients,
                len(ms),
                len(errors),
                f"{p50:.0f}",
                f"{p90:.0f}",
                f"{p99:.0f}",
                f"{ms.max():.0f}",
                f"{len(ms) / seconds:.1f}",
            ]
        ],
    )
    print(table)
    replace_section(
        args.results,
        f"load {args.clients}",
        script_section(
            f"Search service under load: {args.clients} concurrent clients × {args.queries} text queries (Flickr8k test index)",
            shlex.join(["python", "benchmarks/load.py", *sys.argv[1:]]),
            table,
            f"server alive after: {alive}",
            notes=[
                "`xmodal serve` (uvicorn, one torch thread per query) and the clients share the machine, over loopback;",
                "each request encodes its text (minilm), maps it with the index's aligner and searches the 1,000 images.",
            ],
        ),
    )
    for error in errors[:5]:
        print("error:", error)
    if errors or not alive:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
