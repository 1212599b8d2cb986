"""The text-image benchmark: encode (cached), fit every aligner, evaluate on a held-out split.

Flickr8k protocol (``run_flickr8k``): fit on the 30,000 (caption, image) pairs of the 6,000
train images; evaluate on the 1,000 test images and their 5,000 captions (text->image: 5,000
queries, one relevant image each; image->text: 1,000 queries, five relevant captions each),
each aligner with and without CSLS re-scoring. :func:`run_pairs` runs the same protocol on
any dataset with text and images in a train and an evaluation split. Aligners are fitted by
the path ``xmodal fit`` takes (:mod:`xmodal.model.fitting`); closed-form ones share the work
that gives each of them the same numbers (:class:`_SharedFits`), and a row's fit seconds count
that shared work as well as its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.align import Aligner, CCAAligner
from xmodal.align.presets import ALIGNERS, make_aligner
from xmodal.align.statistics import Statistics
from xmodal.bench.results import machine_description, markdown_table, replace_section, stamp, write_json
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_CSLS_K, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from xmodal.data import PairedDataset, load_flickr8k
from xmodal.evaluate import evaluate_bidirectional, evaluate_retrieval
from xmodal.model import TrainingSet, fit_bridges, pair_training_set, route
from xmodal.model.selection import GRIDS, cross_validate
from xmodal.store import EmbeddingStore, embed_split

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
    dataset: str = "Flickr8k"
    size: str = "1k"  # of the evaluation split, as the title says it
    eval_split: str = "test"
    limit: int | None = None
    trained: bool = False  # trained heads among the aligners (their own RESULTS section)
    image_views: tuple[str, ...] = ()  # extra image views the heads trained on (augmentation)
    bridge: bool = False  # rows "NAME + bridge" beside the plain ones (their own RESULTS section)
    rows: list[BenchRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        size = (
            f"first {self.limit} items of {self.eval_split} (smoke run)"
            if self.limit
            else f"{self.size} {self.eval_split}"
        )
        heads = " (with trained heads)" if self.trained else ""
        if self.image_views:
            heads += f", heads trained on extra views {'+'.join(self.image_views)}"
        bridge = ", with the train pairs as a bridge" if self.bridge else ""
        return f"{self.dataset} {size} — text {self.text_encoder}, image {self.image_encoder}{heads}{bridge}"

    def best(self) -> BenchRow:
        """The row with the highest mean of t2i and i2t R@10."""
        return max(self.rows, key=lambda r: r.metrics["t2i/R@10"] + r.metrics["i2t/R@10"])

    def to_json(self) -> dict[str, Any]:
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


def run_flickr8k(data_root: str | Path | None = None, **options: Any) -> BenchResult:
    """:func:`run_pairs` on Flickr8k (read from ``data_root``)."""
    return run_pairs(load_flickr8k(data_root), **options)


def run_pairs(
    dataset: PairedDataset,
    *,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    aligners: list[str] | None = None,
    csls_k: int = DEFAULT_CSLS_K,
    cache_dir: str | Path | None = None,
    models_dir: str | Path | None = None,
    backend: str = DEFAULT_BACKEND,
    progress: bool = True,
    train_split: str = "train",
    eval_split: str = "test",
    limit: int | None = None,
    image_views: tuple[str, ...] = (),
    auto: bool = False,
    bridge: bool = False,
) -> BenchResult:
    """Run the benchmark on ``dataset``; ``aligners`` names presets (default: every closed-form one).
    With ``auto``, every closed-form aligner is also run as ``NAME (auto)``, its regularisation
    chosen by cross-validation on the train pairs (:func:`~xmodal.model.selection.cross_validate`).

    ``limit`` keeps the first ``limit`` items of each split (a quick smoke run, not the
    protocol). ``image_views`` names encoders of other views of the train images (e.g.
    ``efficientnet-lite0-mirror``): trained heads also see every caption paired with each
    view, in the same group as the original (augmentation; evaluation is unchanged). With
    ``bridge``, each aligner also has rows ``NAME + bridge``: the queries rewritten by the train
    pairs (:func:`~xmodal.model.fit_bridges`; an image votes with the mean
    of its captions), then scored as the plain rows are.
    """
    names = list(ALIGNERS) if aligners is None else aligners
    models = {name: make_aligner(name) for name in names}
    store = EmbeddingStore(cache_dir)
    trained = any(m.iterative for m in models.values())
    name, size = (
        ("Flickr8k", "1k") if dataset.name == "flickr8k" else (dataset.name, f"{len(dataset.split(eval_split))}-item")
    )
    result = BenchResult(
        text_encoder, image_encoder, name, size, eval_split, limit, trained, tuple(image_views), bridge
    )
    started = time.perf_counter()
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    _, training = pair_training_set(
        dataset, store, text_encoder, image_encoder, iterative=trained, split=train_split, image_views=image_views,
        limit=limit, **options,
    )  # fmt: skip
    test = embed_split(dataset.split(eval_split).subset(limit), store, text_encoder, image_encoder, **options)
    result.seconds["encode"] = time.perf_counter() - started
    result.cache = {"hits": store.hits, "misses": store.misses}
    eval_started = time.perf_counter()
    runs = [(name, aligner, False) for name, aligner in models.items()]
    runs += [(f"{n} (auto)", make_aligner(n), True) for n, a in models.items() if auto and type(a) in GRIDS]
    shared = _SharedFits(training, (aligner for _, aligner, tuned in runs if not tuned))
    ks = (0, csls_k) if csls_k else (0,)  # each row plain and with CSLS
    for name, aligner, tuned in runs:
        if not aligner.accepts(training.dims):
            continue  # e.g. identity across encoders that do not share a space
        fit_started = time.perf_counter()
        if tuned:
            assert training.groups is not None
            cross_validate(aligner, training.embeddings, training.groups)
        tuning_seconds = time.perf_counter() - fit_started
        aligner, shared_seconds = shared.fit(aligner)
        fit_seconds = tuning_seconds + shared_seconds
        text = aligner.transform(test.text, "text")
        image = aligner.transform(test.image, "image")
        for k in ks:
            metrics = evaluate_bidirectional(text, image, test.text_items, test.image_items, csls_k=k)
            result.rows.append(BenchRow(name, k, fit_seconds, metrics))
        if bridge and training.present is None:
            bridges = fit_bridges(aligner, training)
            queries = {
                "t2i": bridges[route("text", "image")].transform(text),
                "i2t": bridges[route("image", "text")].transform(image),
            }
            for k in ks:
                metrics = evaluate_retrieval(
                    queries["t2i"], image, test.text_items, test.image_items, csls_k=k, prefix="t2i/"
                ) | evaluate_retrieval(queries["i2t"], text, test.image_items, test.text_items, csls_k=k, prefix="i2t/")
                result.rows.append(BenchRow(f"{name} + bridge", k, fit_seconds, metrics))
    result.seconds["fit+evaluate"] = time.perf_counter() - eval_started
    result.seconds["total"] = time.perf_counter() - started
    return result


class _SharedFits:
    """Fits aligners on one training set, sharing the work that gives several closed-form ones
    the same numbers: the statistics of the training pairs (one per preprocessing: rows
    L2-normalised or not), and for CCA one solve per regularisation, at the widest width asked
    for, whose leading directions are every narrower fit (:meth:`CCAAligner.truncated`). Other
    aligners, or training sets with missing modalities, are fitted by :meth:`TrainingSet.fit`."""

    def __init__(self, training: TrainingSet, aligners: Iterable[Aligner]):
        self.training = training
        self._widths: dict[tuple[float, bool], int] = {}  # (reg, normalize) -> widest CCA asked for
        for aligner in aligners:
            if type(aligner) is CCAAligner:
                key = _cca_key(aligner)
                self._widths[key] = max(self._widths.get(key, 0), aligner.n_components)
        self._statistics: dict[bool, tuple[Statistics, float]] = {}  # normalize -> (statistics, seconds)
        self._cca: dict[tuple[float, bool], tuple[CCAAligner, float]] = {}  # widest fit and its solve seconds

    def fit(self, aligner: Aligner) -> tuple[Aligner, float]:
        """``aligner`` fitted (a CCA may come back as a truncation of a shared fit, which maps
        rows the same way) and the seconds of the work it used, shared or not."""
        if not aligner.statistical or self.training.present is not None:
            started = time.perf_counter()
            return self.training.fit(aligner), time.perf_counter() - started
        statistics, seconds = self._shared_statistics(aligner)
        started = time.perf_counter()
        if type(aligner) is not CCAAligner or aligner.n_components > self._widths.get(_cca_key(aligner), 0):
            return aligner.fit_statistics(statistics), seconds + time.perf_counter() - started
        key = _cca_key(aligner)
        if key not in self._cca:
            widest = CCAAligner(self._widths[key], aligner.reg, normalize=aligner.normalize)
            self._cca[key] = widest.fit_statistics(statistics), time.perf_counter() - started
        widest, solve_seconds = self._cca[key]
        return widest.truncated(aligner.n_components, aligner.weight_power), seconds + solve_seconds

    def _shared_statistics(self, aligner: Aligner) -> tuple[Statistics, float]:
        """The statistics of the training pairs as ``aligner`` preprocesses them, and the seconds they took."""
        if aligner.normalize not in self._statistics:
            started = time.perf_counter()
            statistics = aligner.statistics(self.training.embeddings)
            self._statistics[aligner.normalize] = statistics, time.perf_counter() - started
        return self._statistics[aligner.normalize]


def _cca_key(aligner: CCAAligner) -> tuple[float, bool]:
    """What CCA fits of every width share: the regularisation and the preprocessing."""
    return aligner.reg, aligner.normalize


def write_results(result: BenchResult, json_path: Path, markdown_path: Path, command: str) -> None:
    """Write the JSON and replace this configuration's section of RESULTS.md."""
    write_json(json_path, result.to_json())
    best = result.best()
    section = "\n".join(
        [
            f"### {result.title}",
            "",
            f"{stamp(command)} · {result.timing()}",
            "",
            result.to_markdown(),
            "",
            f"Best: **{best.aligner}{' + CSLS' if best.csls_k else ''}** — "
            f"t2i R@10 {best.metrics['t2i/R@10']:.1f}, i2t R@10 {best.metrics['i2t/R@10']:.1f}.",
        ]
    )
    replace_section(markdown_path, result.title, section)
