"""Zero-shot classification of a labelled dataset split by a fitted model (``xmodal classify``).

Protocol:

- the classes are the labels (of one label key) of the whole dataset, every split, so the
  task does not depend on the split measured;
- each class is read as prompts: every template (``"a picture of {}"``; by default ``"{}"``,
  the name alone, as the aligner learnt from captions, not prompts) filled with each of its
  names (the label itself, or the readable names of a class-names file), encoded by the
  model's encoder of the text modality, mapped into the shared space and averaged as unit
  vectors (prompt ensembling, :func:`~xmodal.retrieval.zeroshot.class_prototypes`);
- the queries are the values of the query modality (images, say) of the split's labelled
  items, mapped into the shared space and scored against the classes by the model's
  similarity, without CSLS: a query's class must not depend on the other queries (CSLS's
  per-query term leaves its ranking of the classes unchanged anyway; its per-class term,
  against the test queries or the train images, lowered top-1 on Tux Paint in nearly every
  setting tried);
- metrics: :func:`xmodal.evaluate.classification_report` (top-1/top-5 against the
  majority-class and chance rates).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.bench.results import markdown_table, replace_section, stamp
from xmodal.data import DataError, PairedDataset
from xmodal.data.dataset import LABEL
from xmodal.data.textfiles import read_text
from xmodal.encoders import Encoder
from xmodal.evaluate import ClassificationReport, classification_report
from xmodal.model import Model
from xmodal.retrieval.zeroshot import zero_shot_scores
from xmodal.store import EmbeddingStore, embed_modality

DEFAULT_TEMPLATES = ("{}",)
SLOT = "{}"  # where a template takes the class name
KS = (1, 5)
WORST_COLUMNS = ("class", "queries", "top1", "most often confused with")


def class_prompts(
    classes: Sequence[str], templates: Sequence[str], names: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[str], np.ndarray]:
    """``(prompts, class index of each)``: every template with its ``{}`` replaced by each name
    of each class (``names[label]``, default the label itself)."""
    if not templates:
        raise ValueError("give at least one template")
    for template in templates:
        if SLOT not in template:
            raise ValueError(f"template {template!r} has no {SLOT} where the class name goes")
    unknown = sorted(set(names or {}) - set(classes))
    if unknown:
        raise ValueError(
            f"class names are given for {unknown[0]!r}, which is not a class; classes: {', '.join(classes)}"
        )
    prompts, owner = [], []
    for index, label in enumerate(classes):
        for name in (names or {}).get(label, [label]):
            for template in templates:
                prompts.append(template.replace(SLOT, name))
                owner.append(index)
    return prompts, np.asarray(owner, dtype=np.int64)


def load_class_names(path: str | Path) -> dict[str, list[str]]:
    """A JSON object mapping each label to a readable name or a list of names."""
    try:
        obj = json.loads(read_text(Path(path)))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object mapping labels to names, got {type(obj).__name__}")
    names = {}
    for label, value in obj.items():
        many = value if isinstance(value, list) else [value]
        if not many or not all(isinstance(name, str) and name.strip() for name in many):
            raise DataError(f"{path}: the names of {label!r} must be a non-empty string or list of them, got {value!r}")
        names[label] = [name.strip() for name in many]
    return names


@dataclass
class ClassifyResult:
    """One zero-shot classification run: the settings, the report and the timings."""

    dataset: str
    split: str
    label_key: str
    query_modality: str
    text_modality: str
    model_name: str  # the model file's name
    model: str  # the model file's name, encoders and aligner
    templates: tuple[str, ...]
    classes: list[str]
    names: dict[str, list[str]]
    report: ClassificationReport
    n_unlabelled: int  # items of the split with a query but no label: not classified
    seconds: dict[str, float]

    @property
    def title(self) -> str:
        return (
            f"Zero-shot classification: {self.dataset}/{self.split} {self.query_modality} by {self.label_key} "
            f"({len(self.classes)} classes, prompts in {self.text_modality}), {self.model_name}"
        )

    def rows(self) -> list[tuple[str, str]]:
        """``(name, value)`` rows of the summary: accuracies and baselines (%), counts."""
        shown = [f"{kind}top{k}" for k in KS for kind in ("", "majority ", "chance ")]
        metrics = self.report.metrics
        values = [(name, f"{metrics[name]:.1f}") for name in [*shown, "balanced top1"]]
        return [*values, ("queries", str(int(self.report.support.sum()))), ("classes", str(len(self.classes)))]

    def per_class(self) -> list[dict[str, Any]]:
        """Each class with queries, worst top-1 first: its queries, top-1 and the wrong class its
        queries most often take (``confused with``)."""
        report = self.report
        missed = report.confusion - np.diag(np.diag(report.confusion))
        found = [
            {
                "class": label,
                "queries": int(report.support[c]),
                "top1": float(report.class_top1[c]),
                "confused with": self.classes[int(missed[c].argmax())] if missed[c].any() else None,
            }
            for c, label in enumerate(self.classes)
            if report.support[c]
        ]
        return sorted(found, key=lambda row: (row["top1"], -row["queries"]))

    def worst(self, n: int) -> list[list[str]]:
        """Table rows (:data:`WORST_COLUMNS`) of the ``n`` classes of lowest top-1."""
        rows = self.per_class()[:n]
        return [[r["class"], str(r["queries"]), f"{r['top1']:.1f}", r["confused with"] or ""] for r in rows]

    def timing(self) -> str:
        return ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.seconds.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "label_key": self.label_key,
            "query_modality": self.query_modality,
            "text_modality": self.text_modality,
            "model": self.model,
            "templates": list(self.templates),
            "classes": self.classes,
            "names": self.names,
            "metrics": self.report.metrics,
            "per_class": self.per_class(),
            "confusion": self.report.confusion.tolist(),
            "unlabelled": self.n_unlabelled,
            "seconds": self.seconds,
        }


def run_classify(
    model: Model,
    dataset: PairedDataset,
    store: EmbeddingStore,
    *,
    split: str = "test",
    label_key: str = LABEL,
    query_modality: str | None = None,
    text_modality: str | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    names: Mapping[str, Sequence[str]] | None = None,
    models_dir: str | Path | None = None,
) -> ClassifyResult:
    """Classify the ``query_modality`` values of ``dataset``'s ``split`` by their ``label_key``
    labels with ``model`` (see the module docstring). The text modality defaults to the model's
    one modality read by a text encoder; the query modality to ``image``, else its other one."""
    started = time.perf_counter()
    part = dataset.split(split)
    classes = sorted({label for label in dataset.labels(label_key) if label is not None})
    labels = part.labels(label_key)
    prompts, owner = class_prompts(classes, templates, names)
    encoders = model.build_encoders(models_dir)
    text, query = _modalities(encoders, text_modality, query_modality)
    queries, items = embed_modality(part, query, encoders[query], store, progress=False)
    labelled = np.array([labels[i] is not None for i in items], dtype=bool)
    if not labelled.any():
        raise DataError(f"{part.name}: no item with a {query} value has a {label_key!r} label")
    prompt_embeddings = store.embed(encoders[text], prompts, label=f"{dataset.name}/class prompts")
    encoded = time.perf_counter()
    index = {label: c for c, label in enumerate(classes)}
    targets = np.array([index[labels[i]] for i in items[labelled]], dtype=np.int64)
    scores = zero_shot_scores(
        model.transform(queries[labelled], query), model.transform(prompt_embeddings, text), owner, metric=model.metric
    )
    report = classification_report(scores, targets, KS)
    described = ", ".join(f"{m}={e}" for m, e in model.encoder_names().items())
    about = model.about
    if "pairs" in about:
        described += f"; fitted on {about['dataset']}/{about['split']}, {about['pairs']} pairs"
    return ClassifyResult(
        dataset=dataset.name, split=split, label_key=label_key, query_modality=query, text_modality=text,
        model_name=model.path.name if model.path else "model",
        model=f"{model.path.name if model.path else 'model'} ({described}; {model.aligner!r})",
        templates=tuple(templates), classes=classes, names={c: list((names or {}).get(c, [c])) for c in classes},
        report=report, n_unlabelled=len(set(items[~labelled].tolist())),
        seconds={"encode": encoded - started, "score": time.perf_counter() - encoded},
    )  # fmt: skip


def _modalities(encoders: Mapping[str, Encoder], text: str | None, query: str | None) -> tuple[str, str]:
    """``(text modality, query modality)`` of the model, checked, with their defaults."""
    for option, modality in (("--text-modality", text), ("--query-modality", query)):
        if modality is not None and modality not in encoders:
            raise ValueError(f"{option} {modality}: the model has no such modality; it has {', '.join(encoders)}")
    if text is None:
        readers = [m for m, e in encoders.items() if e.modality == "text" and m != query]
        if len(readers) != 1:
            held = f"several ({', '.join(readers)})" if readers else "none"
            raise ValueError(
                f"the model's text modalities to read the class prompts: {held}; name one (--text-modality)"
            )
        text = readers[0]
    if encoders[text].modality != "text":
        raise ValueError(f"--text-modality {text}: its encoder reads {encoders[text].modality}, not text")
    if query is None:
        others = [m for m in encoders if m != text]
        query = "image" if "image" in others else others[0] if len(others) == 1 else None
        if query is None:
            raise ValueError(f"name the modality to classify (--query-modality): one of {', '.join(others)}")
    return text, query


def write_classify_results(result: ClassifyResult, markdown_path: Path, command: str, n_worst: int = 5) -> None:
    """This configuration's section of RESULTS.md: the summary, and the worst classes."""
    worst = result.worst(n_worst)
    section = "\n".join(
        [
            f"### {result.title}",
            "",
            f"{stamp(command)} · {result.timing()}",
            "",
            f"Model {result.model}; templates {', '.join(repr(t) for t in result.templates)}. Percentages; "
            "majority topK: the K most frequent classes of the queries, chance topK: K / classes.",
            "",
            markdown_table(["metric", "value"], result.rows()),
            "",
            f"Worst {len(worst)} classes:",
            "",
            markdown_table(WORST_COLUMNS, worst),
        ]
    )
    key = f"classify {result.dataset}/{result.split} {result.query_modality} {result.model_name}"
    replace_section(markdown_path, key, section)
