"""Speed benchmark: image encoding, aligner fitting and evaluation, in one run on one machine.

What is measured (wall-clock, ``time.perf_counter``; torch and ONNX Runtime keep their
default thread counts):

1. **Image encoding throughput** of ``efficientnet-lite0`` with the ``torch`` (eager) and
   the ``onnx`` (ONNX Runtime) backend on the first ``--images`` Flickr8k test images,
   batch size ``--batch-size``, straight through ``encoder.encode(paths)`` (no embedding
   cache). Each backend encodes one warm-up batch first; the image files are read once
   beforehand so both backends find them in the OS page cache. The timed pass includes JPEG
   decoding and preprocessing, so a separate row times decoding + preprocessing alone.
   The two backends' outputs are compared (max abs difference, cosine between rows).
2. **Aligner fit seconds** of every aligner in ``xmodal.align.presets.ALIGNERS`` (identity
   is skipped when the two encoders' dimensions differ) on the 30,000 Flickr8k train
   (caption, image) pairs embedded by ``minilm`` and ``efficientnet-lite0`` (from the
   embedding cache), against the baseline ``sklearn.cross_decomposition.CCA`` fitted on the
   same pairs, L2-normalised like xmodal's default: once with ``n_components=128`` (what
   xmodal's ``cca-128`` computes) and once with a small ``n_components`` that finishes
   (``--sklearn-components``). scikit-learn's iterative CCA runs in a child process under a
   wall-clock budget (``--sklearn-timeout``); a run that times out or fails gives a lower
   bound (its time so far). Ratios: scikit-learn seconds / seconds of xmodal's ``cca-128``.
3. **Evaluation seconds** of ``evaluate_bidirectional`` on the test split (5,000 captions x
   1,000 images) in the ``cca-128`` space, without and with CSLS, median of
   ``--eval-repeats`` runs each.

Results: a table on stdout, JSON (``--json``) and the ``speed`` section of RESULTS.md
(``--results``). Run from the repository root::

    .venv/bin/python benchmarks/speed.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.align import Aligner
from xmodal.align.presets import ALIGNERS
from xmodal.bench.results import machine_description, replace_section
from xmodal.data import PairedDataset, load_flickr8k, load_image
from xmodal.encoders import get_encoder
from xmodal.encoders.image import RESOLUTION, preprocess
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, SplitEmbeddings, embed_split

TEXT_ENCODER = "minilm"
IMAGE_ENCODER = "efficientnet-lite0"
COMPARED_ALIGNER = "cca-128"  # the xmodal row compared with scikit-learn's CCA
READY_TIMEOUT_S = 300  # for the scikit-learn child to start and load its data
SECTION_KEY = "speed"
PARTS = ("encode", "fit", "eval")


# -- 1. image encoding --------------------------------------------------------------------


@dataclass
class EncodeResult:
    encoder: str
    images: int
    batch_size: int
    seconds: dict[str, float]  # "torch", "onnx", "preprocess only"
    images_per_s: dict[str, float]
    onnx_over_torch: float
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def warm_page_cache(paths: Sequence[str]) -> None:
    """Read every file once so no timed pass pays for the first disk read."""
    for path in paths:
        Path(path).read_bytes()


def encode_throughput(paths: list[str], backend: str, batch_size: int, models: Path | None) -> tuple[np.ndarray, float]:
    """Embeddings of ``paths`` and the seconds they took, after one warm-up batch."""
    encoder = get_encoder(IMAGE_ENCODER, backend=backend, models_dir=models)
    encoder.encode(paths[:batch_size], batch_size=batch_size)
    return timed(lambda: encoder.encode(paths, batch_size=batch_size))


def preprocess_seconds(paths: list[str], resolution: int) -> float:
    """Seconds to decode and preprocess ``paths`` (the model-free share of encoding)."""
    return timed(lambda: [preprocess(load_image(p), resolution) for p in paths])[1]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure_encoding(test: PairedDataset, n_images: int, batch_size: int, models: Path | None) -> EncodeResult:
    paths = test.flatten("image").values[:n_images]
    warm_page_cache(paths)
    outputs, seconds = {}, {}
    for backend in ("torch", "onnx"):
        outputs[backend], seconds[backend] = encode_throughput(paths, backend, batch_size, models)
    seconds["preprocess only"] = preprocess_seconds(paths, RESOLUTION[IMAGE_ENCODER])
    cosines = row_cosines(outputs["torch"], outputs["onnx"])
    per_s = {name: len(paths) / s for name, s in seconds.items()}
    return EncodeResult(
        encoder=IMAGE_ENCODER,
        images=len(paths),
        batch_size=batch_size,
        seconds=seconds,
        images_per_s=per_s,
        onnx_over_torch=per_s["onnx"] / per_s["torch"],
        max_abs_diff=float(np.max(np.abs(outputs["torch"] - outputs["onnx"]))),
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
    )


# -- 2. aligner fitting -------------------------------------------------------------------


@dataclass
class SklearnResult:
    estimator: str
    timeout_s: float
    seconds: float | None = None  # None when it did not finish
    timed_out: bool = False
    error: str | None = None
    failed_after_s: float | None = None  # wall time from the start of the fit to the error
    n_iter: list[int] = field(default_factory=list)
    convergence_warnings: int = 0


@dataclass
class SklearnComparison:
    run: SklearnResult
    ratio: float | None  # sklearn seconds / compared_with seconds
    ratio_is_lower_bound: bool  # sklearn did not finish: its time so far over xmodal's


@dataclass
class FitResult:
    pairs: int
    dims: dict[str, int]
    seconds: dict[str, float]
    skipped: list[str]
    compared_with: str
    sklearn: list[SklearnComparison]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Float64 rows of unit norm, as xmodal's ``Aligner(normalize=True)`` preprocesses."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_aligners(pairs: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str], dict[str, Aligner]]:
    """Fit seconds of every preset aligner, the skipped names, and the fitted aligners."""
    seconds, skipped, fitted = {}, [], {}
    for name, factory in ALIGNERS.items():
        aligner = factory()
        if not aligner.accepts({m: x.shape[1] for m, x in pairs.items()}):
            skipped.append(name)
            continue
        fitted[name], seconds[name] = timed(lambda aligner=aligner: aligner.fit(pairs))
    return seconds, skipped, fitted


def _sklearn_worker(folder: str, n_components: int, max_iter: int, results: mp.Queue) -> None:
    """Child process: load the pairs, say "ready", fit scikit-learn's CCA, report."""
    try:
        from sklearn.cross_decomposition import CCA
        from sklearn.exceptions import ConvergenceWarning

        text = l2_normalize(np.load(Path(folder) / "text.npy"))
        image = l2_normalize(np.load(Path(folder) / "image.npy"))
        model = CCA(n_components=n_components, max_iter=max_iter)
        results.put(("ready", None))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            _, seconds = timed(lambda: model.fit(text, image))
        report = {
            "seconds": seconds,
            "n_iter": [int(n) for n in model.n_iter_],
            "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
        }
        results.put(("done", report))
    except BaseException as exc:  # report anything, the parent decides
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def fit_sklearn_cca(pairs: dict[str, np.ndarray], n_components: int, max_iter: int, timeout: float) -> SklearnResult:
    """Fit seconds of ``sklearn.cross_decomposition.CCA`` in a child process, at most ``timeout``.

    The clock of the budget starts when the child has loaded its data; the fit itself is
    timed inside the child.
    """
    result = SklearnResult(f"sklearn CCA(n_components={n_components}, max_iter={max_iter})", timeout)
    context = mp.get_context("spawn")  # no fork of a process that runs torch / ORT threads
    results = context.Queue()
    with tempfile.TemporaryDirectory(prefix="xmodal-speed-") as folder:
        for modality in ("text", "image"):
            np.save(Path(folder) / f"{modality}.npy", pairs[modality])
        child = context.Process(target=_sklearn_worker, args=(folder, n_components, max_iter, results), daemon=True)
        child.start()
        try:
            try:
                _expect(results, child, "ready", timeout=READY_TIMEOUT_S)
            except queue.Empty:
                raise RuntimeError(f"child not ready after {READY_TIMEOUT_S} s") from None
            started = time.perf_counter()
            try:
                report = _expect(results, child, "done", timeout=timeout)
            except RuntimeError:
                result.failed_after_s = time.perf_counter() - started
                raise
            result.seconds = report["seconds"]
            result.n_iter = report["n_iter"]
            result.convergence_warnings = report["convergence_warnings"]
        except queue.Empty:
            result.timed_out = True
        except RuntimeError as exc:
            result.error = str(exc)
        finally:
            _stop(child)
    return result


def _expect(results: mp.Queue, child: mp.Process, kind: str, timeout: float) -> Any:
    """The payload of the child's next message, which must be ``kind``.

    Raises :class:`queue.Empty` after ``timeout`` seconds, :class:`RuntimeError` when the
    child reports an error or dies without a word (e.g. killed for memory).
    """
    deadline = time.perf_counter() + timeout
    while True:
        try:
            got, payload = results.get(timeout=max(0.0, min(1.0, deadline - time.perf_counter())))
            break
        except queue.Empty:
            if not child.is_alive():
                try:
                    got, payload = results.get(timeout=1.0)
                    break
                except queue.Empty:
                    raise RuntimeError(f"child process exited with code {child.exitcode}") from None
            if time.perf_counter() >= deadline:
                raise
    if got != kind:
        raise RuntimeError(payload if got == "error" else f"unexpected message {got!r}")
    return payload


def _stop(child: mp.Process) -> None:
    child.join(timeout=5)
    if child.is_alive():
        child.terminate()
        child.join(timeout=10)
    if child.is_alive():
        child.kill()
        child.join()


def measure_fitting(
    pairs: dict[str, np.ndarray], components: Sequence[int], max_iter: int, timeout: float
) -> tuple[FitResult, dict[str, Aligner]]:
    seconds, skipped, fitted = fit_aligners(pairs)
    base = seconds[COMPARED_ALIGNER]
    comparisons = []
    for n_components in components:
        sk = fit_sklearn_cca(pairs, n_components, max_iter, timeout)
        elapsed = sk.seconds if sk.seconds is not None else (timeout if sk.timed_out else sk.failed_after_s)
        ratio = None if elapsed is None else elapsed / base
        comparisons.append(SklearnComparison(sk, ratio, ratio_is_lower_bound=sk.seconds is None))
    result = FitResult(
        pairs=len(pairs["text"]),
        dims={m: int(x.shape[1]) for m, x in pairs.items()},
        seconds=seconds,
        skipped=skipped,
        compared_with=COMPARED_ALIGNER,
        sklearn=comparisons,
    )
    return result, fitted


# -- 3. evaluation ------------------------------------------------------------------------


@dataclass
class EvalResult:
    space: str
    text_queries: int
    image_queries: int
    runs: dict[str, list[float]]  # "csls_k=K" -> seconds of every run
    median_s: dict[str, float]


def measure_evaluation(aligner: Aligner, test: SplitEmbeddings, csls_k: int, repeats: int) -> EvalResult:
    text = aligner.transform(test.text, "text")
    image = aligner.transform(test.image, "image")
    runs: dict[str, list[float]] = {}
    for k in (0, csls_k):
        evaluate = partial(evaluate_bidirectional, text, image, test.text_items, test.image_items, csls_k=k)
        runs[f"csls_k={k}"] = [timed(evaluate)[1] for _ in range(repeats)]
    return EvalResult(
        space=COMPARED_ALIGNER,
        text_queries=len(text),
        image_queries=len(image),
        runs=runs,
        median_s={name: statistics.median(s) for name, s in runs.items()},
    )


# -- output -------------------------------------------------------------------------------


def encode_table(r: EncodeResult) -> str:
    lines = ["| backend | images | batch | seconds | images/s |", "|---|---:|---:|---:|---:|"]
    for name, seconds in r.seconds.items():
        label = f"{r.encoder} `{name}`" if name != "preprocess only" else "JPEG decode + preprocess only"
        lines.append(f"| {label} | {r.images} | {r.batch_size} | {seconds:.2f} | {r.images_per_s[name]:.1f} |")
    lines += [
        "",
        f"ONNX / torch throughput: **{r.onnx_over_torch:.2f}×**. Outputs agree: max |torch − onnx| "
        f"= {r.max_abs_diff:.2e}, cosine between rows mean {r.mean_cosine:.7f} (min {r.min_cosine:.7f}).",
    ]
    return "\n".join(lines)


def sklearn_cell(sk: SklearnResult) -> str:
    if sk.seconds is not None:
        return f"{sk.seconds:.2f}"
    if sk.timed_out:
        return f"> {sk.timeout_s:g} (timeout)"
    after = f" after {sk.failed_after_s:.0f} s" if sk.failed_after_s is not None else ""
    return f"failed{after}: {sk.error}"


def fit_table(r: FitResult) -> str:
    lines = ["| aligner | fit s | scikit-learn s / xmodal `" + r.compared_with + "` s |", "|---|---:|---:|"]
    lines += [f"| xmodal `{name}` | {s:.2f} | |" for name, s in r.seconds.items()]
    for c in r.sklearn:
        ratio = "–" if c.ratio is None else f"**{'> ' if c.ratio_is_lower_bound else ''}{c.ratio:.0f}×**"
        lines.append(f"| {c.run.estimator} | {sklearn_cell(c.run)} | {ratio} |")
    notes = [
        "",
        f"{r.pairs:,} train pairs, text {r.dims['text']}-d (`{TEXT_ENCODER}`), image "
        f"{r.dims['image']}-d (`{IMAGE_ENCODER}`), rows L2-normalised. A scikit-learn run that "
        "did not finish gives a lower bound (its time so far over xmodal's).",
    ]
    for c in r.sklearn:
        if c.run.n_iter:
            notes.append(
                f"{c.run.estimator}: iterations per component max {max(c.run.n_iter)}, "
                f"{c.run.convergence_warnings} convergence warnings."
            )
    if r.skipped:
        notes.append(f"Skipped (dimensions differ): {', '.join(f'`{n}`' for n in r.skipped)}.")
    return "\n".join(lines + notes)


def eval_table(r: EvalResult) -> str:
    lines = ["| scoring | median s | runs (s) |", "|---|---:|---|"]
    for name, runs in r.runs.items():
        label = "cosine" if name == "csls_k=0" else f"CSLS {name.removeprefix('csls_')}"
        lines.append(f"| {label} | {r.median_s[name]:.3f} | {', '.join(f'{s:.3f}' for s in runs)} |")
    lines += [
        "",
        f"`evaluate_bidirectional` in the `{r.space}` space: {r.text_queries:,} caption queries "
        f"→ {r.image_queries:,} images and back; median of {len(next(iter(r.runs.values())))} runs.",
    ]
    return "\n".join(lines)


def markdown(command: str, results: dict[str, Any]) -> str:
    parts = [
        "### Speed",
        "",
        f"Command: `{command}` · machine: {machine_description()} · {time.strftime('%Y-%m-%d')} · {versions_line()}",
    ]
    titles = {"encode": "Image encoding", "fit": "Aligner fit", "eval": "Evaluation"}
    tables = {"encode": encode_table, "fit": fit_table, "eval": eval_table}
    for part, result in results.items():
        parts += ["", f"#### {titles[part]}", "", tables[part](result)]
    return "\n".join(parts)


def versions() -> dict[str, str]:
    import onnxruntime
    import sklearn
    import torch

    return {
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "onnxruntime": onnxruntime.__version__,
        "scikit-learn": sklearn.__version__,
    }


def versions_line() -> str:
    return ", ".join(f"{k} {v}" for k, v in versions().items())


def write_outputs(results: dict[str, Any], command: str, json_path: Path, md_path: Path) -> str:
    """Write the JSON and the RESULTS.md section; return the markdown body."""
    payload = {
        "benchmark": "speed",
        "command": command,
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions(),
        **{part: asdict(result) for part, result in results.items()},
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=1))
    body = markdown(command, results)
    replace_section(md_path, SECTION_KEY, body)
    return body


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="test images to encode per backend")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data", type=Path, default=None, help="data root that contains flickr8k/")
    p.add_argument("--cache", type=Path, default=None, help="xmodal embedding cache directory")
    p.add_argument("--models", type=Path, default=None, help="xmodal models directory (ONNX exports)")
    p.add_argument("--pairs", type=int, default=0, help="use only the first N train pairs (0: all)")
    p.add_argument("--cca-max-iter", type=int, default=500, help="scikit-learn CCA max_iter")
    p.add_argument(
        "--sklearn-components",
        type=int,
        nargs="+",
        default=[128, 8],
        help="n_components of each scikit-learn CCA run (128 as xmodal's; a small one that finishes)",
    )
    p.add_argument("--sklearn-timeout", type=float, default=600.0, help="seconds for scikit-learn's fit")
    p.add_argument("--csls-k", type=int, default=10)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    p.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/speed.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)])
    store = EmbeddingStore(args.cache)
    dataset = load_flickr8k(args.data)
    results: dict[str, Any] = {}
    print(f"machine: {machine_description()} · {versions_line()}", flush=True)

    if "encode" in args.parts:
        print(f"[1/3] encoding {args.images} test images with {IMAGE_ENCODER} (torch, onnx)...", flush=True)
        results["encode"] = measure_encoding(dataset.split("test"), args.images, args.batch_size, args.models)

    aligner = None
    if "fit" in args.parts or "eval" in args.parts:
        train = embed_split(dataset.split("train"), store, TEXT_ENCODER, IMAGE_ENCODER, progress=False)
        pairs = train.training_pairs()
        if args.pairs:
            pairs = {m: x[: args.pairs] for m, x in pairs.items()}
    if "fit" in args.parts:
        print(
            f"[2/3] fitting aligners on {len(pairs['text']):,} pairs "
            f"(scikit-learn budget {args.sklearn_timeout:g} s)...",
            flush=True,
        )
        results["fit"], fitted = measure_fitting(
            pairs, args.sklearn_components, args.cca_max_iter, args.sklearn_timeout
        )
        aligner = fitted[COMPARED_ALIGNER]
    if "eval" in args.parts:
        print(f"[3/3] evaluating in the {COMPARED_ALIGNER} space...", flush=True)
        aligner = aligner or ALIGNERS[COMPARED_ALIGNER]().fit(pairs)
        test = embed_split(dataset.split("test"), store, TEXT_ENCODER, IMAGE_ENCODER, progress=False)
        results["eval"] = measure_evaluation(aligner, test, args.csls_k, args.eval_repeats)

    if store.misses:
        print(f"note: {store.misses} embedding cache misses (encoded now, not timed)", flush=True)
    body = write_outputs(results, command, args.json, args.results)
    print("\n" + body)
    print(f"\nwrote {args.json} and the '{SECTION_KEY}' section of {args.results}")


if __name__ == "__main__":
    main()
