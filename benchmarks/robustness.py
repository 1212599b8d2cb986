"""Nothing lost, nothing crashes: hostile input, faults and load against the real programs.

Every probe runs the real thing (``xmodal`` processes, a real ``xmodal serve`` on loopback,
real files) and classifies each case: handled cleanly (one ``error:`` line and exit 2 for the
command line; a 4xx JSON ``{"detail": ...}`` for the service), a traceback (exit 1, a 5xx, a
dropped connection, a hang) or data lost (an index that no longer loads, or lost items).

1. bad HTTP input: decompression bombs, unbounded chunked uploads, foreign Host headers, long
   query strings, traversal ids, broken uploads, bad parameters;
2. schemathesis: valid and invalid requests generated from the OpenAPI schema, every route;
3. load: 32 clients x 50 text queries and 8 clients x 20 image uploads at once, RSS of the
   server before and after; then text queries while 4 clients upload 13000 x 13000 images;
4. command line bad input: missing, corrupt and hostile files and names;
5. faults: ``kill -9`` of a writer at each stage of a save (3 trials a stage), and 10 trials of
   5 concurrent ``xmodal index add``;
6. crafted index folders: damaged or hostile files in an index.

    .venv/bin/python benchmarks/robustness.py
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from load import free_port, wait_until_up  # benchmarks/load.py: the same server start
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import PairedDataset, load_flickr8k
from xmodal.model import fit_model
from xmodal.search import Searcher, items_from_dataset, items_from_texts
from xmodal.search.storage import FAILPOINT_ENV, SAVE_STAGES, current_generation
from xmodal.store import EmbeddingStore

ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}
Row = list[object]


def xmodal(*args: object, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "xmodal.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def clean_exit(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr + done.stdout


# -- set-up --------------------------------------------------------------------------------
def build(work: Path) -> tuple[Path, Path, Path]:
    """A model (cca-256-weighted on Flickr8k train), an index of 200 test images, and a small
    index of texts for the writers' trials."""
    flickr = load_flickr8k()
    store = EmbeddingStore()
    model_path = work / "model.npz"
    from xmodal.align.presets import make_aligner

    model = fit_model(flickr, make_aligner("cca-256-weighted"), store, encoders=ENCODERS, progress=False)
    model.save(model_path)
    test = PairedDataset("test200", flickr.split("test").items[:200])
    images = Searcher.build(items_from_dataset(test), model, store=store).save(work / "images")
    (work / "base.txt").write_text("".join(f"a photo number {i} of a dog\n" for i in range(12)))
    texts = Searcher.build(items_from_texts(work / "base.txt"), model, modality="text", store=store)
    return model_path, images, texts.save(work / "texts")


class Server:
    """``xmodal serve`` in a process of its own on a free loopback port."""

    def __init__(self, index: Path, *extra: str):
        port = free_port()
        command = [sys.executable, "-m", "xmodal.cli", "serve", str(index), "--port", str(port), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_until_up(self.url, self.process)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (13000, 13000)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- 1. bad HTTP input -----------------------------------------------------------------------
def http_cases(url: str, jpeg: bytes) -> list[tuple[str, Callable[[], httpx.Response]]]:
    def chunked() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 2**20

    form = {"content-type": "multipart/form-data; boundary=x"}

    def post(name: str, data: bytes, **options: object) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(f"{url}/search/image", files={"image": (name, data)}, timeout=60, **options)  # type: ignore[arg-type]

    def get(path: str, **options: object) -> Callable[[], httpx.Response]:
        return lambda: httpx.get(f"{url}{path}", timeout=60, **options)  # type: ignore[arg-type]

    return [
        ("13000 x 13000 PNG bomb", post("bomb.png", _bomb())),
        (
            "chunked 40 MB upload, no length",
            lambda: httpx.post(f"{url}/search/image", content=chunked(), headers=form, timeout=60),
        ),
        ("11 MB upload", post("big.jpg", b"\xff" * (11 * 2**20))),
        ("empty upload", post("empty.jpg", b"")),
        ("not an image", post("notes.txt", b"hello")),
        ("truncated JPEG", post("half.jpg", jpeg[: len(jpeg) // 2])),
        ("random bytes named .png", post("x.png", os.urandom(4096))),
        (
            "SVG with an external entity",
            post(
                "x.svg",
                b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY e SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg">&e;</svg>',
            ),
        ),
        ("foreign Host header", get("/search", params={"q": "a dog"}, headers={"host": "evil.example"})),
        ("query string of 12 KB", get("/search", params={"q": "dog " * 3000})),
        ("empty query", get("/search", params={"q": ""})),
        ("whitespace query", get("/search", params={"q": " \t "})),
        ("no query", get("/search")),
        ("k = 0", get("/search", params={"q": "a dog", "k": 0})),
        ("k = 10^12", get("/search", params={"q": "a dog", "k": 10**12})),
        ("k not a number", get("/search", params={"q": "a dog", "k": "ten"})),
        ("unknown modality", get("/search", params={"q": "a dog", "modality": "audio.xx"})),
        ("an upload as a text query", post("a.jpg", jpeg, params={"modality": "text"})),
        ("traversal id", get("/thumbnails/..%2F..%2Fetc%2Fpasswd")),
        ("absolute id", get("/items/%2Fetc%2Fpasswd")),
        ("unknown id", get("/items/nope.jpg")),
        ("NUL in the query", get("/search", params={"q": "a\x00dog"})),
        ("invalid UTF-8 in the query (decoded with U+FFFD: a search)", get("/search?q=%ff%fe")),
        ("1,000 query parameters", get("/search?" + "&".join(f"k{i}=1" for i in range(1000)))),
    ]


def probe_http(url: str, jpeg: bytes) -> tuple[Row, list[str]]:
    handled, failures = 0, []
    cases = http_cases(url, jpeg)
    for name, request in cases:
        try:
            answer = request()
            searched = "a search" in name and answer.status_code == 200
            ok = searched or (400 <= answer.status_code < 500 and isinstance(answer.json().get("detail"), str))
        except (httpx.HTTPError, ValueError) as error:
            ok, answer = False, error
        alive = httpx.get(f"{url}/search", params={"q": "a dog", "k": 1}, timeout=60).status_code == 200
        handled += ok and alive
        if not (ok and alive):
            failures.append(f"{name}: {getattr(answer, 'status_code', answer)}")
    return ["bad HTTP input", len(cases), handled, len(cases) - handled, 0], failures


# -- 2. schemathesis -------------------------------------------------------------------------
def probe_schemathesis(images: Path, examples: int) -> tuple[Row, list[str]]:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks

    from xmodal.serve import create_app

    app = create_app(Searcher.load(images), allowed_hosts=["*"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    chosen = [not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
              checks.response_schema_conformance, checks.negative_data_rejection]  # fmt: skip
    cases, failures = 0, []
    for operation in (r.ok() for r in schema.get_all_operations()):
        for mode in GenerationMode:
            count = [0]

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def run(case):
                count[0] += 1  # noqa: B023  (run is called at once, in this iteration)
                case.call_and_validate(checks=chosen)

            try:
                run()
            except Unsatisfiable:
                pass
            except Exception as error:  # a failure found by schemathesis
                failures.append(f"{operation.label} ({mode.value}): {str(error).splitlines()[0]}")
            cases += count[0]
    return ["schemathesis (valid + invalid requests)", cases, cases - len(failures), len(failures), 0], failures


# -- 3. load ---------------------------------------------------------------------------------
def probe_load(images: Path, jpegs: list[bytes], captions: list[str]) -> tuple[Row, dict[str, float]]:
    server = Server(images)
    try:
        for i in range(20):  # warm-up: both encoders loaded, their first queries done
            httpx.get(f"{server.url}/search", params={"q": captions[i]}, timeout=60)
            httpx.post(f"{server.url}/search/image", files={"image": ("q.jpg", jpegs[i])}, timeout=60)
        before = server.rss_mb()
        latencies: list[float] = []
        errors = [0]

        def text_client(offset: int) -> None:
            with httpx.Client(timeout=120) as client:
                for i in range(50):
                    started = time.perf_counter()
                    ok = (
                        client.get(
                            f"{server.url}/search", params={"q": captions[(offset + i) % len(captions)]}
                        ).status_code
                        == 200
                    )
                    latencies.append(time.perf_counter() - started)
                    errors[0] += not ok

        def image_client(offset: int) -> None:
            with httpx.Client(timeout=120) as client:
                for i in range(20):
                    data = jpegs[(offset + i) % len(jpegs)]
                    errors[0] += (
                        client.post(f"{server.url}/search/image", files={"image": ("q.jpg", data)}).status_code != 200
                    )

        def round_of_load() -> float:
            threads = [threading.Thread(target=text_client, args=(i * 50,)) for i in range(32)]
            threads += [threading.Thread(target=image_client, args=(i * 20,)) for i in range(8)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return time.perf_counter() - started

        seconds = round_of_load()
        after = server.rss_mb()
        round_two = round_of_load()  # the same again: memory that keeps growing would be a leak
        stats = {
            "requests": 2 * (32 * 50 + 8 * 20), "errors": errors[0], "seconds": seconds + round_two,
            "text p50": float(np.percentile(latencies, 50)), "text p99": float(np.percentile(latencies, 99)),
            "rss before": before, "rss after": after, "rss after round 2": server.rss_mb(),
        }  # fmt: skip
        # text queries while 4 clients upload 13000 x 13000 images
        bomb, bomb_answers, bomb_latencies = _bomb(), [], []
        stop = threading.Event()

        def bomber() -> None:
            while not stop.is_set():
                answer = httpx.post(f"{server.url}/search/image", files={"image": ("b.png", bomb)}, timeout=120)
                bomb_answers.append(answer.status_code)

        bombers = [threading.Thread(target=bomber) for _ in range(4)]
        for thread in bombers:
            thread.start()
        for i in range(100):
            t0 = time.perf_counter()
            errors[0] += httpx.get(f"{server.url}/search", params={"q": captions[i]}, timeout=120).status_code != 200
            bomb_latencies.append(time.perf_counter() - t0)
        stop.set()
        for thread in bombers:
            thread.join()
        stats["bomb uploads"] = len(bomb_answers)
        stats["bomb uploads refused (413)"] = sum(code == 413 for code in bomb_answers)
        stats["text p99 under bombs"] = float(np.percentile(bomb_latencies, 99))
        stats["errors"] = errors[0]
        stats["rss after bombs"] = server.rss_mb()
    finally:
        server.stop()
    total = stats["requests"] + 100 + stats["bomb uploads"]
    clean = total - stats["errors"] - (stats["bomb uploads"] - stats["bomb uploads refused (413)"])
    return [
        "load (2 rounds of 32 x 50 text + 8 x 20 image, then 4 bomb uploaders)",
        total,
        clean,
        total - clean,
        0,
    ], stats


# -- 4. command line bad input ---------------------------------------------------------------
def probe_cli(work: Path, model: Path, images: Path) -> tuple[Row, list[str]]:
    bad = work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (bad / "trunc.npz").write_bytes(model.read_bytes()[:2000])
    (bad / "notnpz.npz").write_bytes(b"\x93NUMPY\x01\x00" + os.urandom(200))
    (bad / "pickle.npy").write_bytes(b"\x80\x04\x95" + os.urandom(64))
    (bad / "unknown.jsonl").write_text('{"id": "a", "colour": "red"}\n')
    (bad / "nan.jsonl").write_text('{"id": "a", "vector.x": [NaN]}\n')
    (bad / "texts.txt").write_text("a dog\n")
    with np.load(model) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["params"]["evil"] = 1
    np.savez(bad / "extra.npz", **{**arrays, "header": np.array(json.dumps(header))})
    cases = [
        ("fit", "nowhere.jsonl", "--out", bad / "m.npz"),
        ("fit", bad / "deep.jsonl", "--out", bad / "m.npz"),
        ("fit", bad / "unknown.jsonl", "--out", bad / "m.npz"),
        ("fit", bad / "nan.jsonl", "--out", bad / "m.npz"),
        ("fit", "flickr8k", "--out", bad / "m.npz", "--aligner", "nope"),
        ("fit", "flickr8k", "--out", bad / "m.npz", "--encoder", "text=nope"),
        ("fit", "flickr8k", "--out", bad / "m.npz", "--encoder", "text=st:/nowhere"),
        ("fit", "flickr8k", "--out", bad / "m.npz", "--encoder", "image=onnx:/nowhere.onnx"),
        ("eval", "flickr8k", "--model", bad / "trunc.npz"),
        ("eval", "flickr8k", "--model", bad / "notnpz.npz"),
        ("eval", "flickr8k", "--model", bad / "pickle.npy"),
        ("eval", "flickr8k", "--model", bad / "extra.npz"),
        ("eval", "flickr8k", "--model", model, "--encoder", "text=mpnet"),
        ("index", "build", bad / "texts.txt", "--model", bad / "trunc.npz", "--out", bad / "i"),
        ("index", "add", bad / "nowhere", bad / "texts.txt"),
        ("index", "add", images, bad / "texts.txt"),
        ("search", images, "   "),
        ("search", images, "a dog", "-k", "0"),
        ("search", images, "--query", "audio.xx=y"),
        ("search", images, "--image", bad / "pickle.npy"),
        ("serve", images, "--host", "0.0.0.0"),
    ]
    failures = [shlex.join(map(str, case)) for case in cases if not clean_exit(xmodal(*case))]
    return ["command line bad input", len(cases), len(cases) - len(failures), len(failures), 0], failures


# -- 5. faults -------------------------------------------------------------------------------
def probe_faults(work: Path, texts: Path) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    kills = lost = clean = 0
    for stage in SAVE_STAGES:
        for trial in range(3):
            index = work / f"kill-{stage}-{trial}"
            subprocess.run(["cp", "-r", str(texts), str(index)], check=True)
            before = {i.id for i in Searcher.load(index).items}
            new = work / f"new{trial}.txt"
            new.write_text(f"a new caption {trial}\nanother new caption {trial}\n")
            done = xmodal("index", "add", index, new, env={FAILPOINT_ENV: f"index-save:{stage}"})
            kills += done.returncode == -signal.SIGKILL
            try:
                after = {i.id for i in Searcher.load(index).items}
                whole = after == before or after == before | {f"{new.stem}:1", f"{new.stem}:2"}
            except (ValueError, FileNotFoundError) as error:
                whole = False
                notes.append(f"kill at {stage}: {error}")
            clean += whole
            lost += not whole
    kill_row: Row = ["faults: kill -9 at each save stage (3 x 3)", 9, clean, 9 - kills, lost]
    adds_clean = adds_lost = adds_failed = 0
    adder = textwrap.dedent("""
        import os, sys
        from xmodal.search import Searcher, items_from_texts
        from xmodal.store import EmbeddingStore
        with Searcher.updating(os.environ["INDEX"]) as index:
            index.add(items_from_texts(sys.argv[1]), store=EmbeddingStore())
    """)
    for trial in range(10):
        index = work / f"concurrent-{trial}"
        subprocess.run(["cp", "-r", str(texts), str(index)], check=True)
        processes = []
        for writer in range(5):
            file = work / f"t{trial}w{writer}.txt"
            file.write_text("".join(f"trial {trial} writer {writer} caption {line}\n" for line in range(3)))
            env = {**os.environ, "INDEX": str(index)}
            processes.append(
                subprocess.Popen([sys.executable, "-c", adder, str(file)], env=env, stderr=subprocess.PIPE)
            )
        codes = [p.wait(timeout=600) for p in processes]
        ids = [i.id for i in Searcher.load(index).items]
        expected = 12 + 15
        ok = all(code == 0 for code in codes) and len(ids) == len(set(ids)) == expected
        adds_clean += ok
        adds_failed += any(code != 0 for code in codes)
        adds_lost += expected - len(set(ids))
        if not ok:
            notes.append(f"concurrent trial {trial}: exit codes {codes}, {len(set(ids))} of {expected} items")
    add_row: Row = ["faults: 5 concurrent index add (10 trials)", 10, adds_clean, adds_failed, adds_lost]
    return [kill_row, add_row], notes


# -- 6. crafted index folders ----------------------------------------------------------------
def probe_crafted(work: Path, texts: Path) -> tuple[Row, list[str]]:
    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    damages: list[tuple[str, Callable[[Path, Path], None]]] = [
        ("faiss.index flipped byte", lambda g, r: flip(g / "faiss.index")),
        ("faiss.index emptied", lambda g, r: (g / "faiss.index").write_bytes(b"")),
        ("embeddings.npy random", lambda g, r: (g / "embeddings.npy").write_bytes(os.urandom(4000))),
        ("model.npz truncated", lambda g, r: (g / "model.npz").write_bytes((g / "model.npz").read_bytes()[:500])),
        ("items.parquet deleted", lambda g, r: (g / "items.parquet").unlink()),
        ("manifest not JSON", lambda g, r: (g / "manifest.json").write_text("{")),
        ("manifest nested 100,000 deep", lambda g, r: (g / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)),
        ("manifest without keys", lambda g, r: (g / "manifest.json").write_text("{}")),
        (
            "manifest of wrong types",
            lambda g, r: (g / "manifest.json").write_text(json.dumps({"format": 2, "count": "x"})),
        ),
        ("manifest naming a model elsewhere", lambda g, r: _rewrite(g, model="../../../model.npz")),
        ("model encoder st:/elsewhere", lambda g, r: _model_encoder(g, "st:/tmp")),
        ("CURRENT naming ../..", lambda g, r: (r / "CURRENT").write_text("../../etc\n")),
        ("CURRENT naming a missing generation", lambda g, r: (r / "CURRENT").write_text("g999999\n")),
        ("CURRENT emptied", lambda g, r: (r / "CURRENT").write_text("")),
    ]
    failures = []
    for name, damage in damages:
        index = work / f"crafted-{len(failures)}-{name.split()[0]}"
        subprocess.run(["rm", "-rf", str(index)], check=True)
        subprocess.run(["cp", "-r", str(texts), str(index)], check=True)
        damage(current_generation(index), index)
        if not clean_exit(xmodal("search", index, "a dog", "-k", "1")):
            failures.append(name)
    return ["crafted index folders", len(damages), len(damages) - len(failures), len(failures), 0], failures


def _rewrite(generation: Path, **fields: object) -> None:
    manifest = json.loads((generation / "manifest.json").read_text())
    manifest.update(fields)
    (generation / "manifest.json").write_text(json.dumps(manifest))


def _model_encoder(generation: Path, name: str) -> None:
    """A consistent edit (checksums updated): the model names an encoder folder outside."""
    from xmodal.core.files import file_digest

    path = generation / "model.npz"
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["model"]["encoders"]["text"]["name"] = name
    np.savez(path, **{**arrays, "header": np.array(json.dumps(header))})
    manifest = json.loads((generation / "manifest.json").read_text())
    manifest["files"]["model.npz"] = file_digest(path)
    (generation / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/xmodal/robustness"))
    parser.add_argument("--examples", type=int, default=25, help="schemathesis examples per route and mode")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", str(args.work)], check=True)
    args.work.mkdir(parents=True)
    started = time.perf_counter()
    model, images, texts = build(args.work)
    flickr = load_flickr8k()
    test = flickr.split("test").items[:200]
    jpegs = [Path(item.values["image"][0]).read_bytes() for item in test[:40]]
    captions = [c for item in flickr.split("test").items[200:600] for c in item.values["text"][:1]]
    rows: list[Row] = []
    notes: list[str] = []
    server = Server(images)
    try:
        row, failures = probe_http(server.url, jpegs[0])
    finally:
        server.stop()
    rows.append(row)
    notes += [f"HTTP: {f}" for f in failures]
    print(row, failures, flush=True)
    for probe in (
        lambda: probe_schemathesis(images, args.examples),
        lambda: probe_cli(args.work, model, images),
        lambda: probe_crafted(args.work, texts),
    ):
        row, failures = probe()
        rows.append(row)
        notes += failures
        print(row, failures, flush=True)
    fault_rows, fault_notes = probe_faults(args.work, texts)
    rows += fault_rows
    notes += fault_notes
    print(fault_rows, fault_notes, flush=True)
    row, stats = probe_load(images, jpegs, captions)
    rows.append(row)
    print(row, stats, flush=True)
    load = (
        f"Load: {stats['requests']} requests in {stats['seconds']:.1f} s, {stats['errors']} errors; text queries p50 "
        f"{stats['text p50'] * 1000:.0f} ms, p99 {stats['text p99'] * 1000:.0f} ms; server RSS {stats['rss before']:.0f} MB "
        f"after warm-up, {stats['rss after']:.0f} MB after the first 1,760 requests, {stats['rss after round 2']:.0f} MB "
        "after the next 1,760. Under 4 clients uploading 13000 x 13000 PNGs "
        f"({stats['bomb uploads']} uploads, {stats['bomb uploads refused (413)']} refused with 413 from their header), "
        f"the p99 of 100 text queries was {stats['text p99 under bombs'] * 1000:.0f} ms; RSS after "
        f"{stats['rss after bombs']:.0f} MB."
    )
    write_section(
        args.results,
        "robustness",
        "Robustness: hostile input, faults and load (issue 12)",
        shlex.join(["python", "benchmarks/robustness.py", *sys.argv[1:]]),
        markdown_table(["probe", "cases", "handled cleanly", "tracebacks", "data lost"], rows),
        f"{time.perf_counter() - started:.0f} s in all",
        notes=[load, *(f"- {note}" for note in notes)],
        announce=False,
    )
    print(load)
    print(f"updated {args.results}")


if __name__ == "__main__":
    main()
