"""Any dataset, any modalities: every ordered pair of modalities, and fused queries, per aligner.

Protocol (:func:`run_matrix`), each modality embedded by its own encoder:

- an aligner of **two** modalities (closed form) is fitted once per unordered pair of
  modalities, on every pair of values of the same train item, and evaluated both ways;
- an aligner of **N** modalities (a head) is fitted once on all of them (one row per slot of
  every train item with two or more), stopping early on the dev split when there is one and on
  a seeded share of the train items otherwise, and evaluated on every ordered pair and on
  fused queries.

For a pair ``q -> g`` the test items that have both modalities take part: every value of
``q`` is a query and every value of ``g`` is in the gallery; relevance is the item. A fused
query combines several modalities of one item (slot ``j`` takes the j-th value of each) and
searches the gallery of ``fuse_to``; its items are those with all of them. Each row's chance
level is the R@10 a random ranking of its gallery reaches.

``unpaired`` pairs of modalities are never seen together in training (of the train items with
both, half lose one and half the other): closed-form aligners of two modalities cannot fit such a
pair, and N-modality ones (:class:`~xmodal.align.PivotAligner`, heads) align it through the others.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.align import Aligner
from xmodal.align.presets import make_aligner
from xmodal.bench.results import machine_description, markdown_table, replace_section, stamp, write_json
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_CSLS_K, DEFAULT_METRIC, FUSIONS
from xmodal.data import PairedDataset
from xmodal.evaluate import chance_recall, evaluate_retrieval, ranks, recall_metrics
from xmodal.model.fitting import TrainingSet
from xmodal.model.selection import GRIDS, cross_validate
from xmodal.retrieval import Scorer, SumScorer
from xmodal.store import EmbeddingStore, ModalityEmbeddings, embed_modalities

KS = (1, 5, 10)
Table = tuple[list[str], list[list[str]]]  # (columns, rows of cells)


@dataclass
class MatrixResult:
    """Metrics of one aligner: every ordered modality pair, and fused queries."""

    aligner: str
    fit_seconds: float
    n_items: int
    eval_seconds: float = 0.0
    pairs: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    fused: dict[tuple[tuple[str, ...], str, str], dict[str, float]] = field(default_factory=dict)

    def cell(self, query: str, gallery: str) -> str:
        return _cell(self.pairs.get((query, gallery)))

    def fused_wins(self, queries: tuple[str, ...], gallery: str, fusion: str) -> bool:
        """Whether fused R@10 beats the R@10 of each query modality alone."""
        fused = self.fused[(queries, gallery, fusion)]["R@10"]
        return all(fused > self.pairs[(q, gallery)]["R@10"] for q in queries)

    def to_json(self) -> dict[str, Any]:
        return {
            "aligner": self.aligner,
            "fit_seconds": self.fit_seconds,
            "eval_seconds": self.eval_seconds,
            "n_items": self.n_items,
            "pairs": [{"query": q, "gallery": g, **m} for (q, g), m in self.pairs.items()],
            "fused": [{"queries": list(c), "gallery": g, "fusion": f, **m} for (c, g, f), m in self.fused.items()],
        }


def _cell(metrics: dict[str, float] | None) -> str:
    return "–" if metrics is None else "/".join(f"{metrics[f'R@{k}']:.1f}" for k in KS)


def _shared(aligner: Aligner, test: ModalityEmbeddings, m: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``m`` that belong to ``items``, in the shared space, and their items."""
    rows = np.flatnonzero(np.isin(test.items[m], items))
    return aligner.transform(test.arrays[m][rows], m), test.items[m][rows]


def evaluate_pairs(
    aligner: Aligner,
    test: ModalityEmbeddings,
    result: MatrixResult,
    *,
    csls_k: int,
    metric: str = DEFAULT_METRIC,
    modalities: tuple[str, ...] | None = None,
    complete: bool = False,
) -> None:
    """Fill ``result.pairs`` with every ordered pair of ``modalities`` (default: the aligner's),
    on the items that have both (``complete``: the items that have every modality)."""
    modalities = modalities or tuple(aligner.modalities_)
    everywhere = test.complete_items(modalities) if complete else None
    for q, g in itertools.permutations(modalities, 2):
        items = everywhere if everywhere is not None else test.complete_items([q, g])
        queries, query_items = _shared(aligner, test, q, items)
        gallery, gallery_items = _shared(aligner, test, g, items)
        result.pairs[(q, g)] = evaluate_retrieval(
            queries, gallery, query_items, gallery_items, metric=metric, csls_k=csls_k, ks=KS
        )


def evaluate_fused(
    aligner: Aligner,
    test: ModalityEmbeddings,
    result: MatrixResult,
    *,
    gallery: str,
    csls_k: int,
    fusions: tuple[str, ...],
    complete: bool = False,
) -> None:
    """Fill ``result.fused``: every pair of the other modalities, then all of them (when more
    than two), as fused queries of the ``gallery`` modality."""
    for combo in _combos([m for m in aligner.modalities_ if m != gallery]):
        items = test.complete_items(aligner.modalities_ if complete else [*combo, gallery])
        shared, gallery_items = _shared(aligner, test, gallery, items)
        item_of_row, slots = test.slot_rows(combo, items)
        queries = [aligner.transform(test.arrays[m][slots[m]], m) for m in combo]
        for fusion in fusions:
            result.fused[(combo, gallery, fusion)] = evaluate_retrieval(
                queries, shared, item_of_row, gallery_items, csls_k=csls_k, ks=KS, fusion=fusion
            )


def evaluate_fused_across(
    aligners: dict[str, Aligner],
    test: ModalityEmbeddings,
    result: MatrixResult,
    *,
    gallery: str,
    csls_k: int,
    metric: str = DEFAULT_METRIC,
) -> None:
    """Fused queries for aligners fitted per pair: ``aligners[m]`` puts ``m`` and ``gallery`` in a
    space of their own, so the queries fuse by score (each modality scored in its own space,
    the scores summed), recorded as fusion ``score``."""
    for combo in _combos(list(aligners)):
        items = test.complete_items([*combo, gallery])
        item_of_row, slots = test.slot_rows(combo, items)
        scorers = []
        for m in combo:
            shared, gallery_items = _shared(aligners[m], test, gallery, items)
            queries = aligners[m].transform(test.arrays[m][slots[m]], m)
            scorers.append(Scorer(queries, shared, metric=metric, csls_k=csls_k))
        result.fused[(combo, gallery, "score")] = recall_metrics(
            ranks(SumScorer(scorers), item_of_row, gallery_items), KS
        )


def _combos(others: list[str]) -> list[tuple[str, ...]]:
    """Every pair of ``others``, then all of them when there are more than two."""
    return [*itertools.combinations(others, 2), *([tuple(others)] if len(others) > 2 else [])]


def matrix_table(result: MatrixResult) -> Table:
    """R@1/R@5/R@10 of every ordered pair: rows are queries, columns galleries."""
    modalities = list(dict.fromkeys(q for q, _ in result.pairs))
    return ["query \\ gallery", *modalities], [[q, *(result.cell(q, g) for g in modalities)] for q in modalities]


def fused_table(result: MatrixResult, fusions: tuple[str, ...], gallery: str = "image") -> Table:
    """Fused queries -> ``gallery``, against each query modality alone (R@1/R@5/R@10)."""
    head = [f"queries -> {gallery}", "alone (each)", *(f"fused: {f}" for f in fusions), "beats each alone (R@10)"]
    rows = []
    for combo in dict.fromkeys(c for c, g, _ in result.fused if g == gallery):
        alone = ", ".join(result.cell(q, gallery) for q in combo) if len(combo) <= 2 else "see matrix"
        cells = [_cell(result.fused[(combo, gallery, f)]) for f in fusions]
        wins = ", ".join(f"{f}: {'yes' if result.fused_wins(combo, gallery, f) else 'no'}" for f in fusions)
        rows.append(["+".join(combo), alone, *cells, wins])
    return head, rows


@dataclass
class MatrixBench:
    """A run of :func:`run_matrix`: one :class:`MatrixResult` per aligner."""

    dataset: str
    encoders: dict[str, str]
    csls_k: int
    fusions: tuple[str, ...]
    fuse_to: str | None
    eval_split: str
    n_eval_items: int
    limit: int | None = None
    unpaired: tuple[tuple[str, str], ...] = ()
    chance: dict[str, float] = field(default_factory=dict)  # chance R@10 of each row
    results: list[MatrixResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        size = f"first {self.limit} items of {self.eval_split} (smoke run)" if self.limit else self.eval_split
        csls = f", CSLS k={self.csls_k}" if self.csls_k else ""
        encoders = ", ".join(f"{m} {e}" for m, e in self.encoders.items())
        unpaired = ", ".join(f"{a}–{b}" for a, b in self.unpaired)
        trained = f", trained with no {unpaired} pairs" if unpaired else ""
        return f"{self.dataset} {size} ({self.n_eval_items} items) — {encoders}{csls}{trained}"

    def table(self) -> Table:
        """One row per ordered pair, then per fused query: its chance R@10, then one
        R@1/R@5/R@10 column per aligner."""
        columns = ["query -> gallery", "chance R@10", *(r.aligner for r in self.results)]
        rows = []
        for q, g in dict.fromkeys(p for r in self.results for p in r.pairs):
            route = _route((q,), g)
            rows.append([route, f"{self.chance[route]:.1f}", *(r.cell(q, g) for r in self.results)])
        for combo, gallery, fusion in dict.fromkeys(f for r in self.results for f in r.fused):
            route = _route(combo, gallery)
            cells = [_cell(r.fused.get((combo, gallery, fusion))) for r in self.results]
            rows.append([f"{route} (fused: {fusion})", f"{self.chance[route]:.1f}", *cells])
        return columns, rows

    def timing(self) -> str:
        runs = ", ".join(f"{r.aligner} fit {r.fit_seconds:.1f} s + eval {r.eval_seconds:.1f} s" for r in self.results)
        return (
            f"encode {self.seconds['encode']:.1f} s (cache hits {self.cache['hits']}, misses {self.cache['misses']}), "
            f"{runs}; total {self.seconds['total']:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.title,
            "encoders": self.encoders,
            "csls_k": self.csls_k,
            "unpaired": [list(pair) for pair in self.unpaired],
            "chance_R@10": self.chance,
            "machine": machine_description(),
            "seconds": self.seconds,
            "cache": self.cache,
            "results": [r.to_json() for r in self.results],
        }


def run_matrix(
    dataset: PairedDataset,
    encoders: dict[str, str],
    *,
    aligners: list[str],
    csls_k: int = DEFAULT_CSLS_K,
    fusions: tuple[str, ...] = FUSIONS,
    fuse_to: str | None = None,
    train_split: str = "train",
    eval_split: str = "test",
    dev_split: str = "dev",
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    models_dir: str | Path | None = None,
    backend: str = DEFAULT_BACKEND,
    progress: bool = True,
    auto: bool = False,
    unpaired: tuple[tuple[str, str], ...] = (),
    seed: int = 0,
) -> MatrixBench:
    """Fit and evaluate each named aligner on the modalities of ``encoders`` (see the module
    docstring); with ``auto``, each closed-form one also as ``NAME (auto)``: its regularisation
    chosen per pair by cross-validation on the train pairs (:func:`~xmodal.model.selection.cross_validate`);
    ``unpaired`` pairs of modalities share no train item (``seed`` chooses which loses which)."""
    modalities = tuple(encoders)
    if len(modalities) < 2:
        raise ValueError(f"{dataset.name}: a benchmark needs two or more modalities, got {list(modalities)}")
    if fuse_to is not None and fuse_to not in modalities:
        raise ValueError(f"fused queries search {fuse_to!r}, which is not among {', '.join(modalities)}")
    for pair in unpaired:
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(modalities):
            raise ValueError(f"unpaired modalities must be two of {', '.join(modalities)}, got {list(pair)}")
    for split in (train_split, eval_split):
        dataset.split(split)  # an unknown split fails before any encoding
    factories = {name: make_aligner(name) for name in aligners}  # unknown names fail early too
    store = EmbeddingStore(cache_dir)
    started = time.perf_counter()
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    train = embed_modalities(dataset.split(train_split).subset(limit), store, encoders, **options)
    for first, second in unpaired:
        train = train.without_pairs(first, second, seed)
    test = embed_modalities(dataset.split(eval_split).subset(limit), store, encoders, **options)
    dev = None
    if any(a.iterative for a in factories.values()) and dev_split in dataset.splits:
        dev = embed_modalities(dataset.split(dev_split).subset(limit), store, encoders, **options)
    bench = MatrixBench(
        dataset.name, dict(encoders), csls_k, fusions, fuse_to, eval_split, test.n_items, limit, tuple(unpaired)
    )
    bench.seconds["encode"] = time.perf_counter() - started
    bench.cache = {"hits": store.hits, "misses": store.misses}
    runs = [(name, False) for name in factories]
    runs += [(name, True) for name, a in factories.items() if auto and type(a) in GRIDS]
    for name, tuned in runs:
        aligner = factories[name]
        result = MatrixResult(f"{name} (auto)" if tuned else name, 0.0, test.n_items)
        if aligner.n_modalities == 2:
            to_gallery: dict[str, Aligner] = {}  # the aligner of each modality with fuse_to
            for first, second in itertools.combinations(modalities, 2):
                pair_aligner = make_aligner(name, pair=(first, second))
                embeddings, groups = train.pairs(first, second)
                if not len(groups) or not pair_aligner.accepts({m: x.shape[1] for m, x in embeddings.items()}):
                    continue  # no train pairs; or identity across encoders that do not share a space
                fit_started = time.perf_counter()
                if tuned:
                    cross_validate(pair_aligner, embeddings, groups)
                pair_aligner.fit(embeddings, groups=groups)
                eval_started = time.perf_counter()
                result.fit_seconds += eval_started - fit_started
                evaluate_pairs(pair_aligner, test, result, csls_k=csls_k)
                result.eval_seconds += time.perf_counter() - eval_started
                if fuse_to in (first, second):
                    to_gallery[second if first == fuse_to else first] = pair_aligner
            eval_started = time.perf_counter()
            if fuse_to is not None and len(to_gallery) > 1 and "score" in fusions:
                evaluate_fused_across(to_gallery, test, result, gallery=fuse_to, csls_k=csls_k)
            result.eval_seconds += time.perf_counter() - eval_started
        else:
            fit_started = time.perf_counter()
            TrainingSet.from_modalities(train, dev).fit(aligner)
            eval_started = time.perf_counter()
            result.fit_seconds = eval_started - fit_started
            evaluate_pairs(aligner, test, result, csls_k=csls_k)
            if fuse_to is not None and len(modalities) > 2:
                evaluate_fused(aligner, test, result, gallery=fuse_to, csls_k=csls_k, fusions=fusions)
            result.eval_seconds = time.perf_counter() - eval_started
        bench.results.append(result)
    bench.chance = _chance_levels(test, bench.results)
    bench.seconds["total"] = time.perf_counter() - started
    return bench


def _chance_levels(test: ModalityEmbeddings, results: list[MatrixResult]) -> dict[str, float]:
    """Chance R@10 (%) of every ordered pair and fused query of ``results``, by row label."""
    chance = {}
    for q, g in dict.fromkeys(p for r in results for p in r.pairs):
        items = test.complete_items([q, g])
        rows = {m: np.isin(test.items[m], items) for m in (q, g)}
        chance[_route((q,), g)] = chance_recall(test.items[q][rows[q]], test.items[g][rows[g]], KS[-1])
    for combo, gallery, _ in dict.fromkeys(f for r in results for f in r.fused):
        items = test.complete_items([*combo, gallery])
        item_of_row, _ = test.slot_rows(combo, items)
        gallery_items = test.items[gallery][np.isin(test.items[gallery], items)]
        chance[_route(combo, gallery)] = chance_recall(item_of_row, gallery_items, KS[-1])
    return chance


def _route(queries: tuple[str, ...], gallery: str) -> str:
    """A table row's name: ``q -> g``, or ``a+b -> g`` for fused queries."""
    return f"{'+'.join(queries)} -> {gallery}"


def write_matrix_results(bench: MatrixBench, json_path: Path, markdown_path: Path, command: str) -> None:
    """The JSON file, and this configuration's section of RESULTS.md replaced."""
    write_json(json_path, bench.to_json())
    section = "\n".join(
        [
            f"### {bench.title}",
            "",
            f"{stamp(command)} · {bench.timing()}",
            "",
            "R@1/R@5/R@10 of each aligner (closed-form ones fitted per pair of modalities, heads on all at once):",
            "",
            markdown_table(*bench.table()),
        ]
    )
    replace_section(markdown_path, bench.title, section)
