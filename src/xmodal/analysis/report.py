"""``xmodal analyze``: measure every space and write a self-contained HTML report (figures as
PNG files and thumbnails beside it)."""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.analysis.compare import GAP_COLUMNS, cosine_ranks, gap_correlations, gap_row, similarity_rows
from xmodal.analysis.plots import projection_figure, recall_curves, similarity_histograms
from xmodal.analysis.spaces import UNALIGNED, FittedSpace, fit_spaces
from xmodal.core.arrays import unit_rows
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from xmodal.core.files import write_text_atomic
from xmodal.data import PairedDataset
from xmodal.data.images import jpeg_thumbnail
from xmodal.model import Model, TrainingSet
from xmodal.retrieval import Scorer, topk
from xmodal.store import EmbeddingStore, EncoderLike, SplitEmbeddings, embed_split

DEFAULT_ANALYSIS_ALIGNERS = ("lstsq-t2i", "procrustes-t2i", "cca-128", "cca-256-weighted", "cca-384-wide")
SIMILARITY_COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")
THUMBNAIL = 160


@dataclass
class Analysis:
    """What the report shows, also written as ``analysis.json``."""

    title: str
    gaps: dict[str, dict[str, float]]
    correlations: dict[str, dict[str, float]]
    similarities: list[dict]
    failures: list[dict]
    figures: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)
    validation: str = "dev split"  # what trained aligners and learned similarities stop early on


def analyze(
    dataset: PairedDataset,
    out_dir: str | Path,
    store: EmbeddingStore,
    *,
    text_encoder: EncoderLike = DEFAULT_TEXT_ENCODER,
    image_encoder: EncoderLike = DEFAULT_IMAGE_ENCODER,
    aligners: Sequence[str] = DEFAULT_ANALYSIS_ALIGNERS,
    models: Sequence[Model] = (),
    split: str = "test",
    learned: Sequence[str] = (),
    limit: int | None = None,
    n_failures: int = 8,
    seed: int = 0,
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
    progress: bool = True,
    modalities: tuple[str, str] = ("text", "image"),
) -> Analysis:
    """Fit ``aligners`` on the train split (trained ones stopped early on the dev split when
    the dataset has one), add the spaces of fitted ``models`` (their encoders must be the
    ones given), measure the unaligned and every aligned space on ``split``, and write
    ``report.html`` (+ ``figures/``, ``thumbs/``, ``analysis.json``) into ``out_dir``.
    ``limit`` keeps the first items of each split (a quick look). ``modalities`` are the pair
    analysed: the first (embedded by ``text_encoder``) queries, the second (``image_encoder``)
    is the gallery; the tables and figures call them text and image."""
    out = Path(out_dir)
    started = time.perf_counter()
    names = ["train", *(["dev"] if "dev" in dataset.splits else []), split]
    splits = {name: dataset.split(name).subset(limit) for name in dict.fromkeys(names)}
    options: dict[str, Any] = {"backend": backend, "models_dir": models_dir, "progress": progress}
    emb = {
        name: embed_split(d, store, text_encoder, image_encoder, modalities=modalities, **options)
        for name, d in splits.items()
    }
    dev = emb.get("dev")
    seconds = {"encode": time.perf_counter() - started}

    tick = time.perf_counter()
    spaces = fit_spaces(aligners, TrainingSet.from_pairs(emb["train"], dev))
    for model in models:
        if set(model.modalities) != set(modalities):
            raise ValueError(f"{_model_name(model)} aligns {', '.join(model.modalities)}, not {', '.join(modalities)}")
        spaces.append(FittedSpace(_model_name(model), model.aligner, modalities=modalities))
    mapped = {space.name: space.apply(emb[split]) for space in spaces}
    rank_sets = {name: cosine_ranks(m) for name, m in mapped.items()}
    gaps = {name: gap_row(m, seed=seed, known_ranks=rank_sets[name]) for name, m in mapped.items()}
    correlations = gap_correlations({n: r for n, r in gaps.items() if n != UNALIGNED})
    similarities = similarity_rows(spaces, emb["train"], emb[split], dev, learned=learned, seed=seed)
    seconds["measure"] = time.perf_counter() - tick

    tick = time.perf_counter()
    figures = [
        projection_figure(mapped, out / "figures" / "projections.png", seed=seed),
        similarity_histograms(mapped, out / "figures" / "similarity_histograms.png", seed=seed),
        recall_curves(rank_sets, out / "figures" / "recall_at_k.png"),
    ]
    focus = max((n for n in gaps if n != UNALIGNED), key=lambda n: gaps[n]["mean R@10"], default=UNALIGNED)
    failures = worst_failures(
        mapped[focus], rank_sets[focus]["t2i"], splits[split], out / "thumbs", n_failures, modalities=modalities
    )
    seconds["figures"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - started

    encoders = f"{modalities[0]} {_name(text_encoder)}, {modalities[1]} {_name(image_encoder)}"
    title = f"{dataset.name} {split}{f' (first {limit} items)' if limit else ''}: {encoders}"
    validation = "the dev split" if dev is not None else "a seeded share of the train items (no dev split)"
    analysis = Analysis(
        title, gaps, correlations, similarities, [dict(f, space=focus) for f in failures], figures, seconds, validation
    )
    out.mkdir(parents=True, exist_ok=True)
    record = {**vars(analysis), "figures": [str(p.relative_to(out)) for p in figures]}
    write_text_atomic(out / "analysis.json", json.dumps(record, indent=1, default=float))
    write_text_atomic(out / "report.html", render_html(analysis, out))
    return analysis


def _name(encoder: EncoderLike) -> str:
    return encoder if isinstance(encoder, str) else encoder.name


def _model_name(model: Model) -> str:
    return f"model {model.path.stem}" if model.path is not None else f"model {type(model.aligner).__name__}"


def worst_failures(
    split: SplitEmbeddings,
    t2i_ranks: np.ndarray,
    dataset: PairedDataset,
    thumbs: Path,
    n: int,
    shown: int = 3,
    modalities: tuple[str, str] = ("text", "image"),
) -> list[dict]:
    """The ``n`` queries (values of the first of ``modalities``) whose right gallery value (of
    the second) ranks worst: the query, its ``shown`` top (wrong) values and the right one, each
    shown as a thumbnail written under ``thumbs`` (images) or as text."""
    queries, gallery = (dataset.flatten(m) for m in modalities)
    kinds = [dataset.kind(m) for m in modalities]
    scores, top = topk(Scorer(unit_rows(split.text), unit_rows(split.image)), min(shown, len(gallery.values)))
    failures = []
    for row in np.argsort(-t2i_ranks, kind="stable")[:n]:
        item = split.text_items[row]
        right = int(np.flatnonzero(split.image_items == item)[0])
        failures.append(
            {
                "query": _shown(queries.values[row], kinds[0], thumbs),
                "rank": int(t2i_ranks[row]),
                "retrieved": [
                    {**_shown(gallery.values[i], kinds[1], thumbs), "score": float(s)}
                    for i, s in zip(top[row], scores[row])
                ],
                "right": _shown(gallery.values[right], kinds[1], thumbs),
            }
        )
    return failures


def _shown(value: str, kind: str, thumbs: Path) -> dict[str, str]:
    """How a value appears in the failure gallery: ``{"thumb": ...}`` or ``{"text": ...}``."""
    if kind == "image":
        return {"thumb": _thumbnail(value, thumbs)}
    return {"text": value if kind == "text" else f"{kind} {Path(value).name if kind == 'audio' else 'row ' + value}"}


def _thumbnail(path: str, folder: Path) -> str:
    """A JPEG thumbnail of ``path`` under ``folder``; returns its name relative to the report."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (Path(path).stem + ".jpg")
    if not target.is_file():
        target.write_bytes(jpeg_thumbnail(path, THUMBNAIL))
    return f"{folder.name}/{target.name}"


def render_html(analysis: Analysis, out: Path) -> str:
    """The report page: tables, figures and the failure gallery."""
    gap_table = _html_table(
        ["space", *GAP_COLUMNS],
        [[name, *(_fmt(row[c], c) for c in GAP_COLUMNS)] for name, row in analysis.gaps.items()],
        "gaps",
    )
    corr_table = _html_table(
        ["measure", "Pearson r", "Spearman ρ", "aligners"],
        [[m, _fmt(c["pearson"]), _fmt(c["spearman"]), c["n"]] for m, c in analysis.correlations.items()],
        "correlations",
    )
    sim_table = _html_table(
        ["space", "similarity", *SIMILARITY_COLUMNS],
        [[r["space"], r["similarity"], *(_fmt(r[c], c) for c in SIMILARITY_COLUMNS)] for r in analysis.similarities],
        "similarities",
    )
    figures = "\n".join(
        f'<figure><img src="{p.relative_to(out)}" alt="{p.stem}"><figcaption>{p.stem.replace("_", " ")}</figcaption></figure>'
        for p in analysis.figures
    )
    gallery = "\n".join(_failure_html(f) for f in analysis.failures)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in analysis.seconds.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmodal analysis — {html.escape(analysis.title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #ddd; }}
.failure {{ display: flex; gap: 0.6em; align-items: flex-start; margin: 1em 0; padding: 0.5em; border-top: 1px solid #ddd; }}
.failure .query {{ width: 18em; }} .failure img {{ width: {THUMBNAIL}px; }}
.failure .right img {{ outline: 3px solid #2a2; }} .failure .wrong img {{ outline: 3px solid #c33; }}
small {{ color: #666; }}
</style></head><body>
<h1>xmodal analysis</h1>
<p>{html.escape(analysis.title)} · {time.strftime("%Y-%m-%d")} · {timing} · trained aligners and
learned similarities stop early on {html.escape(analysis.validation)}</p>

<h2>Modality gap and geometry, before and after alignment</h2>
<p><small>All measures on L2-normalised rows. <b>none</b>: the encoders' own coordinates (the
smaller space zero-padded), i.e. before alignment. Centroid gap: |mean text − mean image| (Liang
et al. 2022). W2 exact: optimal transport between the first captions and the images (at most
1,000 each); W2 sliced: √d × sliced W2 (1,000 directions); W2 Gaussian: closed form between
fitted Gaussians. CKA: linear CKA over (caption, image) pairs. Alignment (lower = closer pairs)
and uniformity (lower = more spread) of Wang &amp; Isola (2020). Hubness: skewness of how often
each gallery item is in a top-10 list, and the share never in one. R@10: cosine.</small></p>
{gap_table}
<h3>Does the gap predict retrieval? Correlation with mean R@10 across the aligners</h3>
{corr_table}

<h2>Similarity functions × spaces</h2>
<p><small>R@K on {html.escape(analysis.title)}. Fixed similarities need one space (so not the
unaligned one when the dimensions differ); learned ones are trained on the train split mapped
into the space.</small></p>
{sim_table}

<h2>Figures</h2>
{figures}

<h2>Worst failures ({html.escape(analysis.failures[0]["space"]) if analysis.failures else "–"})</h2>
<p><small>Each query, the top gallery values retrieved in red (all wrong), the right one in green with its rank.</small></p>
{gallery}
</body></html>
"""


def _failure_html(failure: dict) -> str:
    wrong = "".join(
        f'<div class="wrong">{_value_html(r)}<br><small>score {r["score"]:.3f}</small></div>'
        for r in failure["retrieved"]
    )
    return (
        f'<div class="failure"><div class="query">{_value_html(failure["query"])}</div>{wrong}'
        f'<div class="right">{_value_html(failure["right"])}<br><small>right: rank {failure["rank"]}</small></div></div>'
    )


def _value_html(shown: dict) -> str:
    if "thumb" in shown:
        return f'<img src="{shown["thumb"]}" alt="">'
    return f"“{html.escape(shown['text'])}”"


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[object]], name: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value: float, column: str = "") -> str:
    """Recall (a percentage) with one decimal, other measures with three; NaN as a dash."""
    if math.isnan(value):
        return "–"
    return f"{value:.1f}" if "R@" in column or "%" in column else f"{value:.3f}"
