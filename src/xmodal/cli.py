"""The ``xmodal`` command line: encode, fit, eval, bench, analyze, index, search, serve.

Only typer, rich and :mod:`xmodal.core.config` are imported at start-up; each command imports
what it needs (torch, FAISS, matplotlib, ...) when it runs, so ``xmodal --help`` is quick.
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xmodal.core.config import (
    CACHE_ENV,
    DATA_ENV,
    DEFAULT_ALIGNER,
    DEFAULT_BACKEND,
    DEFAULT_CSLS_K,
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    FUSIONS,
    INDEX_KINDS,
    MODELS_ENV,
)

if TYPE_CHECKING:
    from xmodal.bench.pairs import BenchResult
    from xmodal.model import Model
    from xmodal.search import Hit

app = typer.Typer(
    help="Cross-modal retrieval by aligning pretrained embedding spaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="End-to-end benchmarks.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
index_app = typer.Typer(help="Build and grow search indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")
console = Console()

DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", help=f"Data root holding flickr8k/ (default: ${DATA_ENV} or ../shared/data)."),
]
CacheOpt = Annotated[
    Optional[Path], typer.Option("--cache", help=f"Embedding cache folder (default: ${CACHE_ENV} or .cache/xmodal).")
]
ModelsOpt = Annotated[
    Optional[Path],
    typer.Option("--models", help=f"Tuned and exported models folder (default: ${MODELS_ENV} or .xmodal/models)."),
]
TextEncOpt = Annotated[str, typer.Option("--text-encoder", help="Text encoder name (see `xmodal encoders`).")]
ImageEncOpt = Annotated[str, typer.Option("--image-encoder", help="Image encoder name (see `xmodal encoders`).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Image encoder backend: onnx or torch.")]
CslsOpt = Annotated[int, typer.Option("--csls-k", min=0, help="CSLS neighbourhood size (0: plain cosine).")]
# A fitted model fixes its encoders, backend and scoring: these options default to the model's,
# and one that contradicts it is refused.
ModelTextOpt = Annotated[
    Optional[str],
    typer.Option("--text-encoder", help=f"Default: the model's ({DEFAULT_TEXT_ENCODER} for a bare aligner file)."),
]
ModelImageOpt = Annotated[
    Optional[str],
    typer.Option("--image-encoder", help=f"Default: the model's ({DEFAULT_IMAGE_ENCODER} for a bare aligner file)."),
]
ModelBackendOpt = Annotated[Optional[str], typer.Option("--backend", help="Default: the model's.")]
ModelCslsOpt = Annotated[
    Optional[int], typer.Option("--csls-k", min=0, help="CSLS neighbourhood size (default: the model's).")
]
ModelFileOpt = Annotated[
    Path, typer.Option("--model", "--aligner", help="A model written by `xmodal fit` (or an aligner .npz file).")
]
DatasetArg = Annotated[str, typer.Argument(help="'flickr8k', 'flickr8k-multi30k' or a .jsonl/.csv manifest.")]

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _guard(func: F) -> F:
    """Turn expected user errors into one clear line and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:  # DataError, EncoderError, ... are ValueErrors
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _load_model(path: Path, text: str | None, image: str | None, backend: str | None, csls_k: int | None) -> Model:
    from xmodal.model import Model

    return Model.load(path, encoders={"text": text, "image": image}, backend=backend, csls_k=csls_k)


@app.command()
@_guard
def encode(
    dataset: DatasetArg,
    encoder: Annotated[
        str, typer.Option("--encoder", help="Encoder name (see `xmodal encoders`).")
    ] = DEFAULT_TEXT_ENCODER,
    modality: Annotated[
        Optional[str],
        typer.Option(
            "--modality", help="Dataset modality to encode (default: the encoder's; 'de' in flickr8k-multi30k)."
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split")] = "train",
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the embeddings to this .npy file.")] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
) -> None:
    """Encode one modality of a dataset split (cached by content)."""
    import numpy as np

    from xmodal.data import load_dataset
    from xmodal.encoders import get_encoder
    from xmodal.store import EmbeddingStore

    subset = load_dataset(dataset, data).split(split)
    store = EmbeddingStore(cache)
    enc = get_encoder(encoder, backend=backend, models_dir=models)
    modality = modality or enc.modality
    flat = subset.flatten(modality)
    emb = store.embed(enc, flat.values, label=f"{subset.name}/{modality}", batch_size=batch_size, progress=True)
    source = f"{store.hits} from the cache, {store.misses} encoded"
    console.print(f"{subset.name}: {emb.shape[0]} {modality} embeddings of dimension {emb.shape[1]} ({source})")
    if out is not None:
        np.save(out, emb)
        console.print(f"wrote {out}")


@app.command()
def encoders() -> None:
    """List the encoder names."""
    from xmodal.encoders import ENCODERS

    for name in ENCODERS:
        console.print(name)
    console.print("st:<folder>  (a local sentence-transformers model)")
    console.print("a+b          (concatenation of two encoders of one modality)")


@app.command()
def aligners() -> None:
    """List the named aligner configurations (presets)."""
    from xmodal.align.presets import ALIGNERS, TRAINED_ALIGNERS

    for name in ALIGNERS:
        console.print(name + ("  (default)" if name == DEFAULT_ALIGNER else ""))
    for name in TRAINED_ALIGNERS:
        console.print(f"{name}  (trained)")


@app.command()
@_guard
def finetune(
    dataset: Annotated[str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest (a dev split is used if any).")],
    name: Annotated[
        str, typer.Option("--name", help="Name of the tuned encoder (then usable as --text-encoder NAME).")
    ] = "minilm-lit",
    base: Annotated[
        str, typer.Option("--base", help="Text encoder to tune (a sentence-transformers model).")
    ] = DEFAULT_TEXT_ENCODER,
    image_encoder: ImageEncOpt = DEFAULT_IMAGE_ENCODER,
    layers: Annotated[int, typer.Option("--layers", min=1, help="Number of last transformer layers to tune.")] = 4,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 16,
    patience: Annotated[
        int, typer.Option("--patience", min=1, help="Stop after this many epochs without a lower dev loss.")
    ] = 2,
    image_view: Annotated[
        Optional[list[str]],
        typer.Option(
            "--image-view",
            help="Encoder of another view of the images, for augmentation (e.g. efficientnet-lite0-mirror; repeat).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the tuned layers.")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """LiT: tune the last layers of a text encoder against a locked image encoder; save it by name."""
    from xmodal.align.lit import LiTTuner, finetune_on_dataset
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore

    tuner = LiTTuner(trainable_layers=layers, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed)
    path = finetune_on_dataset(
        load_dataset(dataset, data), EmbeddingStore(cache), tuner, base=base, image_encoder=image_encoder, name=name,
        image_views=image_view or (), backend=backend, models_dir=models,
    )  # fmt: skip
    losses = ", ".join(f"{v:.3f}" for v in tuner.history_)
    console.print(
        f"tuned {base} -> {name} in {tuner.seconds_:.0f} s (dev loss by epoch: {losses}; "
        f"kept epoch {tuner.best_epoch_}) -> {path}",
        soft_wrap=True,
    )


@app.command()
@_guard
def fit(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.npz).")],
    aligner: Annotated[
        str, typer.Option("--aligner", help="A named configuration (see `xmodal aligners`).")
    ] = DEFAULT_ALIGNER,
    split: Annotated[str, typer.Option("--split")] = "train",
    text_encoder: TextEncOpt = DEFAULT_TEXT_ENCODER,
    image_encoder: ImageEncOpt = DEFAULT_IMAGE_ENCODER,
    csls_k: Annotated[
        int, typer.Option("--csls-k", min=0, help="CSLS neighbourhood the model scores with (0: plain cosine).")
    ] = DEFAULT_CSLS_K,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """Fit an aligner on the (text, image) pairs of a split; save the model (aligner, encoders, scoring).

    Trained aligners stop early on the dataset's dev split, or on a seeded share of the
    training items when it has none, as in `xmodal bench`.
    """
    from xmodal.align.presets import make_aligner
    from xmodal.data import load_dataset
    from xmodal.model import fit_model
    from xmodal.store import EmbeddingStore

    model = fit_model(
        load_dataset(dataset, data), make_aligner(aligner), EmbeddingStore(cache), split=split,
        encoders={"text": text_encoder, "image": image_encoder}, backend=backend, models_dir=models, csls_k=csls_k,
    )  # fmt: skip
    path = model.save(out)
    console.print(f"fitted {model.aligner!r} on {model.about['pairs']} pairs -> {path}", soft_wrap=True)


@app.command("eval")
@_guard
def evaluate(
    dataset: DatasetArg,
    model_file: ModelFileOpt,
    split: Annotated[str, typer.Option("--split")] = "test",
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    csls_k: ModelCslsOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a model: R@1/5/10, median and mean rank, both directions, with its encoders and scoring."""
    from xmodal.data import load_dataset
    from xmodal.evaluate import evaluate_bidirectional
    from xmodal.store import EmbeddingStore, embed_split

    model = _load_model(model_file, text_encoder, image_encoder, backend, csls_k)
    encoders = model.build_encoders(models)
    emb = embed_split(
        load_dataset(dataset, data).split(split), EmbeddingStore(cache), encoders["text"], encoders["image"]
    )
    metrics = evaluate_bidirectional(
        model.transform(emb.text, "text"), model.transform(emb.image, "image"), emb.text_items, emb.image_items,
        metric=model.metric, csls_k=model.csls_k,
    )  # fmt: skip
    if as_json:
        print(json.dumps(metrics, indent=1))
        return
    scoring = f" + CSLS k={model.csls_k}" if model.csls_k else ""
    table = Table(title=f"{dataset}/{split}: {model_file.name} ({', '.join(model.encoder_names().values())}){scoring}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.2f}")
    console.print(table)


SourceArg = Annotated[
    str,
    typer.Argument(help="'flickr8k', a .jsonl/.csv manifest, a folder of images, or a .txt file (one text a line)."),
]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Only this split of a dataset (default: every item).")]


@index_app.command("build")
@_guard
def index_build(
    source: SourceArg,
    model_file: ModelFileOpt,
    out: Annotated[Path, typer.Option("--out", help="The index directory to write.")],
    split: SplitOpt = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind", help=f"FAISS index: {', '.join(INDEX_KINDS)} (auto: exact below 50,000 items, else HNSW)."
        ),
    ] = "auto",
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    csls_k: ModelCslsOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
) -> None:
    """Index a gallery (images, or texts from a .txt file) in a model's shared space."""
    from xmodal.search import Searcher, gallery_source
    from xmodal.store import EmbeddingStore

    model = _load_model(model_file, text_encoder, image_encoder, backend, csls_k)
    items, modality = gallery_source(source, data_root=data, split=split)
    index = Searcher.build(
        items, model, modality=modality, kind=kind, store=EmbeddingStore(cache), models_dir=models, progress=True
    )
    path = index.save(out)
    console.print(f"indexed {len(index)} {modality} items ({index.storage.faiss_kind}) -> {path}", soft_wrap=True)


@index_app.command("add")
@_guard
def index_add(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    source: SourceArg,
    split: SplitOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
) -> None:
    """Add items to an index (only the new items are encoded)."""
    from xmodal.search import Searcher, gallery_source
    from xmodal.store import EmbeddingStore

    index = Searcher.load(index_dir, models_dir=models)
    items, modality = gallery_source(source, data_root=data, split=split)
    if modality != index.modality:
        raise ValueError(f"{index_dir} is a gallery of {index.modality}s; {source} holds {modality}s")
    index.add(items, store=EmbeddingStore(cache), progress=True).save(index_dir)
    console.print(f"added {len(items)} items -> {len(index)} in {index_dir}", soft_wrap=True)


@app.command()
@_guard
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    query: Annotated[Optional[str], typer.Argument(help="A text query.")] = None,
    image: Annotated[
        Optional[Path], typer.Option("--image", help="An image query (with a text query too: fused).")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 10,
    csls: Annotated[
        bool, typer.Option("--csls", help="Score by CSLS against the gallery's captions (text queries).")
    ] = False,
    fusion: Annotated[
        str, typer.Option("--fusion", help=f"How a text and an image query combine: {' or '.join(FUSIONS)}.")
    ] = "mean",
    models: ModelsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index by text, by image, or both: rank, score, id, path and caption."""
    from xmodal.search import Searcher

    hits = Searcher.load(index_dir, models_dir=models).search(query, image, k=k, csls=csls, fusion=fusion)
    if as_json:
        results = [h.to_dict() for h in hits]
        print(json.dumps({"query": query, "image": image and str(image), "results": results}, indent=1))
        return
    _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    table = Table()
    for column in ("rank", "score", "id", "path", "caption"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for hit in hits:
        caption = hit.captions[0] if hit.captions else ""
        table.add_row(str(hit.rank), f"{hit.score:.3f}", escape(hit.id), escape(hit.path or ""), escape(caption))
    Console(width=max(console.width, 160)).print(table)


@app.command()
@_guard
def serve(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="torch threads per query encoding (1: one query is too small to share, "
            "and spare cores serve other requests).",
        ),
    ] = 1,
    models: ModelsOpt = None,
) -> None:
    """Serve an index over HTTP: a search page at /, the API at /search (docs at /docs)."""
    import torch
    import uvicorn

    from xmodal.search import Searcher
    from xmodal.serve import create_app

    torch.set_num_threads(threads)
    index = Searcher.load(index_dir, models_dir=models)
    console.print(
        f"serving {len(index)} {index.modality} items from {index_dir} at http://{host}:{port}/", soft_wrap=True
    )
    uvicorn.run(create_app(index), host=host, port=port, log_level="warning")


ResultsOpt = Annotated[
    Path, typer.Option("--results", help="Markdown file whose section for this configuration is replaced.")
]
JsonDirOpt = Annotated[Path, typer.Option("--json-dir", help="Folder for the JSON results.")]
LimitOpt = Annotated[
    Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a smoke run, not the protocol.")
]


@bench_app.command("flickr8k")
@_guard
def bench_flickr8k(
    text_encoder: TextEncOpt = DEFAULT_TEXT_ENCODER,
    image_encoder: ImageEncOpt = DEFAULT_IMAGE_ENCODER,
    aligner: Annotated[
        Optional[list[str]],
        typer.Option(
            "--aligner",
            help="Repeat to pick aligners (default: every closed-form one; trained heads: head-linear, "
            "head-mlp-cca, ...; see `xmodal aligners`).",
        ),
    ] = None,
    csls_k: CslsOpt = DEFAULT_CSLS_K,
    eval_split: Annotated[str, typer.Option("--eval-split", help="Split to evaluate on (dev for tuning).")] = "test",
    limit: LimitOpt = None,
    image_view: Annotated[
        Optional[list[str]],
        typer.Option(
            "--image-view",
            help="Encoder of another view of the train images that trained heads also learn from "
            "(e.g. efficientnet-lite0-mirror; repeat).",
        ),
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    results: ResultsOpt = Path("benchmarks/RESULTS.md"),
    json_dir: JsonDirOpt = Path("benchmarks/results"),
) -> None:
    """Fit every aligner on Flickr8k train, evaluate on the 1k test split, print the table."""
    from xmodal.bench.pairs import run_flickr8k, write_results

    result = run_flickr8k(
        data, text_encoder=text_encoder, image_encoder=image_encoder, aligners=aligner, csls_k=csls_k, cache_dir=cache,
        models_dir=models, backend=backend, eval_split=eval_split, limit=limit, image_views=tuple(image_view or ()),
    )  # fmt: skip
    _print_bench(result)
    views = "".join(f"_{v}" for v in result.image_views)
    name = f"flickr8k-{eval_split}_{text_encoder}_{image_encoder}{'_heads' if result.trained else ''}{views}"
    json_path = json_dir / f"{name.replace('+', '-')}.json"
    write_results(result, json_path, results, _command())
    console.print(f"wrote {json_path} and updated {results}", soft_wrap=True)


@bench_app.command("flickr8k-multi30k")
@_guard
def bench_flickr8k_multi30k(
    aligner: Annotated[
        Optional[list[str]],
        typer.Option(
            "--aligner",
            help="Trained head(s) aligning every modality at once (default: head-linear; e.g. head-linear-pcmr).",
        ),
    ] = None,
    fusion: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fusion", help=f"How fused queries combine modalities: {' or '.join(FUSIONS)} (repeat; default both)."
        ),
    ] = None,
    csls_k: CslsOpt = 0,
    limit: LimitOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    results: ResultsOpt = Path("benchmarks/RESULTS.md"),
    json_dir: JsonDirOpt = Path("benchmarks/results"),
) -> None:
    """Train one head per modality on Flickr8k+Multi30k; print R@1/5/10 for every modality pair and fused queries."""
    from xmodal.bench.multi30k import (
        fused_table,
        matrix_table,
        multi30k_title,
        run_flickr8k_multi30k,
        write_multi30k_results,
    )
    from xmodal.retrieval import check_fusion

    fusions = tuple(check_fusion(name) for name in fusion or FUSIONS)  # before any training
    started = time.perf_counter()
    runs = run_flickr8k_multi30k(
        data, aligners=aligner, csls_k=csls_k, fusions=fusions, cache_dir=cache, models_dir=models, backend=backend,
        limit=limit,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    wide = Console(width=max(console.width, 150))
    for run in runs:
        title = multi30k_title(run, csls_k, limit)
        wide.print(_rich_table(*matrix_table(run), f"{title}: R@1/R@5/R@10, query (rows) -> gallery (columns)"))
        wide.print(_rich_table(*fused_table(run, fusions), f"{title}: fused queries -> image"))
    write_multi30k_results(runs, json_dir, results, _command(), seconds, csls_k=csls_k, limit=limit, fusions=fusions)
    wide.print(f"{seconds:.1f} s in all; updated {results}")


@app.command()
@_guard
def analyze(
    dataset: Annotated[
        str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest (train and the measured split; dev if any).")
    ] = "flickr8k",
    out: Annotated[
        Path, typer.Option("--out", help="Report folder (report.html, figures/, thumbs/, analysis.json).")
    ] = Path("reports/analysis"),
    aligner: Annotated[
        Optional[list[str]],
        typer.Option(
            "--aligner", help="Repeat to pick aligners (default: several closed-form ones; none with --model)."
        ),
    ] = None,
    model_file: Annotated[
        Optional[Path], typer.Option("--model", help="Also measure this fitted model's space (its encoders are used).")
    ] = None,
    learned: Annotated[
        Optional[list[str]],
        typer.Option("--learned", help="Also train a learned similarity per space: mlp, bilinear (repeat)."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to measure.")] = "test",
    failures: Annotated[int, typer.Option("--failures", min=0, help="Worst text queries shown in the gallery.")] = 8,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a quick look.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
) -> None:
    """Measure the modality gap, geometry and similarity functions before and after each aligner; write an HTML report."""
    from xmodal.analysis.report import DEFAULT_ANALYSIS_ALIGNERS
    from xmodal.analysis.report import analyze as analyze_dataset
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore

    fitted = [] if model_file is None else [_load_model(model_file, text_encoder, image_encoder, backend, None)]
    if fitted:
        encoders: dict[str, Any] = fitted[0].build_encoders(models)
        backend = fitted[0].backend
    else:
        encoders = {"text": text_encoder or DEFAULT_TEXT_ENCODER, "image": image_encoder or DEFAULT_IMAGE_ENCODER}
    chosen = aligner if aligner is not None else ([] if fitted else list(DEFAULT_ANALYSIS_ALIGNERS))
    result = analyze_dataset(
        load_dataset(dataset, data), out, EmbeddingStore(cache), text_encoder=encoders["text"],
        image_encoder=encoders["image"], aligners=chosen, models=fitted, split=split, learned=learned or (),
        limit=limit, n_failures=failures, seed=seed, backend=backend or DEFAULT_BACKEND, models_dir=models,
    )  # fmt: skip
    table = Table(title=f"{result.title}: geometry")
    columns = ("centroid gap", "W2 exact", "CKA", "hub skew t2i")
    for column in ("space", *columns, "mean R@10"):
        table.add_column(column, justify="left" if column == "space" else "right")
    for name, row in result.gaps.items():
        table.add_row(name, *(f"{row[c]:.3f}" for c in columns), f"{row['mean R@10']:.1f}")
    console.print(table)
    console.print(f"report: {out / 'report.html'} ({result.seconds['total']:.1f} s)")


def _command() -> str:
    """The command line as typed (for the provenance line of RESULTS.md)."""
    return shlex.join(["xmodal", *sys.argv[1:]])


def _rich_table(columns: list[str], rows: list[list[str]], title: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _print_bench(result: BenchResult) -> None:
    from xmodal.bench.pairs import TABLE_COLUMNS

    wide = Console(width=max(console.width, 150))
    table = Table(title=result.title)
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "aligner" else "right")
    best = result.best()
    for row in result.rows:
        table.add_row(*row.cells(), style="bold green" if row is best else None)
    wide.print(table)
    wide.print(f"{result.timing()}, total {result.seconds['total']:.1f} s")


if __name__ == "__main__":
    app()
