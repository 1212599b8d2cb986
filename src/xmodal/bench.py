"""The Flickr8k benchmark: encode (cached), fit every aligner, evaluate on the 1k test split.

Protocol: fit on the 30,000 (caption, image) pairs of the 6,000 train images; evaluate on
the 1,000 test images and their 5,000 captions (text->image: 5,000 queries, one relevant
image each; image->text: 1,000 queries, five relevant captions each), each aligner with and
without CSLS re-scoring.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.align import IdentityAligner
from xmodal.align.heads import HeadAligner
from xmodal.align.presets import ALIGNERS, make_aligner
from xmodal.data import PairedDataset, load_flickr8k
from xmodal.embeddings import embed_split
from xmodal.markdown import markdown_table
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore

METRIC_COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10", "t2i/medR", "i2t/medR")


@dataclass
class BenchRow:
    aligner: str
    csls_k: int
    fit_seconds: float
    metrics: dict[str, float]

    def cells(self) -> list[str]:
        """The row as printed: aligner, CSLS, every metric column, fit seconds."""
        csls = f"k={self.csls_k}" if self.csls_k else "–"
        metrics = [f"{self.metrics[c]:.1f}" for c in METRIC_COLUMNS]
        return [self.aligner, csls, *metrics, f"{self.fit_seconds:.2f}"]


TABLE_COLUMNS = ("aligner", "CSLS", *METRIC_COLUMNS, "fit s")


@dataclass
class BenchResult:
    text_encoder: str
    image_encoder: str
    eval_split: str = "test"
    limit: int | None = None
    trained: bool = False  # trained heads among the aligners (their own RESULTS section)
    image_views: tuple[str, ...] = ()  # extra image views the heads trained on (augmentation)
    rows: list[BenchRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        size = f"first {self.limit} items of {self.eval_split} (smoke run)" if self.limit else f"1k {self.eval_split}"
        heads = " (with trained heads)" if self.trained else ""
        if self.image_views:
            heads += f", heads trained on extra views {'+'.join(self.image_views)}"
        return f"Flickr8k {size} — text {self.text_encoder}, image {self.image_encoder}{heads}"

    def best(self) -> BenchRow:
        """The row with the highest mean of t2i and i2t R@10."""
        return max(self.rows, key=lambda r: r.metrics["t2i/R@10"] + r.metrics["i2t/R@10"])

    def to_json(self) -> dict:
        return {
            "benchmark": self.title,
            "text_encoder": self.text_encoder,
            "image_encoder": self.image_encoder,
            "machine": machine_description(),
            "seconds": self.seconds,
            "cache": self.cache,
            "rows": [vars(r) for r in self.rows],
        }

    def to_markdown(self) -> str:
        return markdown_table(TABLE_COLUMNS, (r.cells() for r in self.rows))

    def timing(self) -> str:
        return (
            f"encode {self.seconds['encode']:.1f} s (cache hits {self.cache['hits']}, "
            f"misses {self.cache['misses']}), fit+evaluate {self.seconds['fit+evaluate']:.1f} s"
        )


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def run_flickr8k(
    data_root: str | Path | None = None,
    *,
    text_encoder: str = "minilm",
    image_encoder: str = "efficientnet-lite0",
    aligners: list[str] | None = None,
    csls_k: int = 10,
    cache_dir: str | Path | None = None,
    backend: str = "onnx",
    progress: bool = True,
    train_split: str = "train",
    eval_split: str = "test",
    limit: int | None = None,
    image_views: tuple[str, ...] = (),
) -> BenchResult:
    """Run the benchmark; ``aligners`` names presets (default: every closed-form one).

    ``limit`` keeps the first ``limit`` items of each split (a quick smoke run, not the
    protocol). ``image_views`` names encoders of other views of the train images (e.g.
    ``efficientnet-lite0-mirror``): trained heads also see every caption paired with each
    view, in the same group as the original (augmentation; evaluation is unchanged).
    """
    names = list(ALIGNERS) if aligners is None else aligners
    models = {name: make_aligner(name) for name in names}
    store = EmbeddingStore(cache_dir)
    trained = any(isinstance(m, HeadAligner) for m in models.values())
    result = BenchResult(text_encoder, image_encoder, eval_split, limit, trained, tuple(image_views))
    started = time.perf_counter()
    dataset = load_flickr8k(data_root)
    train, test = (
        embed_split(first_items(dataset.split(name), limit), store, text_encoder, image_encoder, backend=backend, progress=progress)
        for name in (train_split, eval_split)
    )
    result.seconds["encode"] = time.perf_counter() - started
    result.cache = {"hits": store.hits, "misses": store.misses}
    pairs = train.training_pairs()
    trained_pairs, trained_fit_params = pairs, {}
    if trained:
        dev = embed_split(first_items(dataset.split("dev"), limit), store, text_encoder, image_encoder, backend=backend, progress=progress)
        views = [
            embed_split(first_items(dataset.split(train_split), limit), store, text_encoder, view, backend=backend, progress=progress)
            for view in image_views
        ]
        trained_pairs = {m: np.concatenate([pairs[m], *(v.training_pairs()[m] for v in views)]) for m in pairs}
        groups = np.concatenate([train.pair_items()] * (1 + len(views)))
        trained_fit_params = {"groups": groups, "validation": dev.first_pairs()}
    eval_started = time.perf_counter()
    for name, aligner in models.items():
        if isinstance(aligner, IdentityAligner) and train.text.shape[1] != train.image.shape[1]:
            continue  # the two encoders do not share a space
        fit_started = time.perf_counter()
        if isinstance(aligner, HeadAligner):
            aligner.fit(trained_pairs, **trained_fit_params)
        else:
            aligner.fit(pairs)
        fit_seconds = time.perf_counter() - fit_started
        text = aligner.transform(test.text, "text")
        image = aligner.transform(test.image, "image")
        for k in (0, csls_k) if csls_k else (0,):
            metrics = evaluate_bidirectional(text, image, test.text_items, test.image_items, csls_k=k)
            result.rows.append(BenchRow(name, k, fit_seconds, metrics))
    result.seconds["fit+evaluate"] = time.perf_counter() - eval_started
    result.seconds["total"] = time.perf_counter() - started
    return result


def first_items(dataset: PairedDataset, limit: int | None) -> PairedDataset:
    """The first ``limit`` items of ``dataset`` (all of them when ``limit`` is None)."""
    return dataset if limit is None else dataset.subset(limit)


def write_results(result: BenchResult, json_path: Path, markdown_path: Path, command: str) -> None:
    """Write the JSON and replace this configuration's section of RESULTS.md."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result.to_json(), indent=1))
    best = result.best()
    section = "\n".join(
        [
            f"### {result.title}",
            "",
            f"Command: `{command}` · machine: {machine_description()} · "
            f"{time.strftime('%Y-%m-%d')} · {result.timing()}",
            "",
            result.to_markdown(),
            "",
            f"Best: **{best.aligner}{' + CSLS' if best.csls_k else ''}** — "
            f"t2i R@10 {best.metrics['t2i/R@10']:.1f}, i2t R@10 {best.metrics['i2t/R@10']:.1f}.",
        ]
    )
    replace_section(markdown_path, result.title, section)


def script_section(title: str, command: str, table: str, details: str = "", notes: Sequence[str] = ()) -> str:
    """A RESULTS.md section for a benchmark script: title, command/machine/date line, table, notes."""
    stamp = f"Command: `{command}` · machine: {machine_description()} · {time.strftime('%Y-%m-%d')}"
    return "\n".join([f"### {title}", "", stamp + (f" · {details}" if details else ""), "", table, *([""] if notes else []), *notes])


def replace_section(path: Path, key: str, body: str) -> None:
    """Replace (or append) the text between ``<!-- begin KEY -->`` and ``<!-- end KEY -->``."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    text = path.read_text() if path.is_file() else "# Results\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
