"""The ``xmodal`` command line: encode, fit, eval, bench, analyze, index, search, serve."""

from __future__ import annotations

import functools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xmodal.align import Aligner
from xmodal.analysis.report import DEFAULT_ANALYSIS_ALIGNERS
from xmodal.analysis.report import analyze as analyze_dataset
from xmodal.align.heads import HeadAligner
from xmodal.align.presets import ALIGNERS, DEFAULT_ALIGNER, TRAINED_ALIGNERS, make_aligner
from xmodal.bench import TABLE_COLUMNS, BenchResult, run_flickr8k, write_results
from xmodal.bench_multi30k import fused_table, matrix_table, multi30k_title, run_flickr8k_multi30k, write_multi30k_results
from xmodal.embeddings import embed_split
from xmodal.data import DataError, load_dataset
from xmodal.encoders import ENCODERS, EncoderError, get_encoder
from xmodal.evaluate import evaluate_bidirectional
from xmodal.fusion import FUSIONS, check_fusion
from xmodal.gallery import gallery_source
from xmodal.index import KINDS, Hit, Index
from xmodal.store import EmbeddingStore

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
    Optional[Path], typer.Option("--data", help="Data root holding flickr8k/ (default: $XMODAL_DATA or ../shared/data).")
]
CacheOpt = Annotated[
    Optional[Path], typer.Option("--cache", help="Cache folder (default: $XMODAL_CACHE or .cache/xmodal).")
]
TextEncOpt = Annotated[str, typer.Option("--text-encoder", help="Text encoder name.")]
ImageEncOpt = Annotated[str, typer.Option("--image-encoder", help="Image encoder name.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Image encoder backend: onnx or torch.")]
CslsOpt = Annotated[int, typer.Option("--csls-k", min=0, help="CSLS neighbourhood size (0: plain cosine).")]


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _guard(func):
    """Turn expected user errors into one clear line and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DataError, EncoderError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))

    return wrapper


@app.command()
@_guard
def encode(
    dataset: Annotated[str, typer.Argument(help="'flickr8k', 'flickr8k-multi30k' or a .jsonl/.csv manifest.")],
    encoder: Annotated[str, typer.Option("--encoder", help="Encoder name (see `xmodal encoders`).")] = "minilm",
    modality: Annotated[Optional[str], typer.Option("--modality", help="Dataset modality to encode (default: the encoder's, e.g. text; 'de' in flickr8k-multi30k).")] = None,
    split: Annotated[str, typer.Option("--split")] = "train",
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the embeddings to this .npy file.")] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
) -> None:
    """Encode one modality of a dataset split (cached by content)."""
    subset = load_dataset(dataset, data).split(split)
    store = EmbeddingStore(cache)
    enc = get_encoder(encoder, backend=backend, cache_dir=store.root)
    modality = modality or enc.modality
    flat = subset.flatten(modality)
    emb = store.embed(enc, flat.values, label=f"{subset.name}/{modality}", batch_size=batch_size, progress=True)
    console.print(f"{subset.name}: {emb.shape[0]} {modality} embeddings of dimension {emb.shape[1]} "
                  f"({'from cache' if store.hits else 'encoded'})")
    if out is not None:
        np.save(out, emb)
        console.print(f"wrote {out}")


@app.command()
def encoders() -> None:
    """List the encoder names."""
    for name in ENCODERS:
        console.print(name)
    console.print("st:<folder>  (a local sentence-transformers model)")
    console.print("a+b          (concatenation of two encoders of one modality)")


@app.command()
@_guard
def finetune(
    dataset: Annotated[str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest with train and dev splits.")],
    name: Annotated[str, typer.Option("--name", help="Name of the tuned encoder (then usable as --text-encoder NAME).")] = "minilm-lit",
    base: Annotated[str, typer.Option("--base", help="Text encoder to tune (a sentence-transformers model).")] = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    layers: Annotated[int, typer.Option("--layers", min=1, help="Number of last transformer layers to tune.")] = 4,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 16,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Stop after this many epochs without a lower dev loss.")] = 2,
    image_view: Annotated[Optional[list[str]], typer.Option("--image-view", help="Encoder of another view of the images, for augmentation (e.g. efficientnet-lite0-mirror; repeat).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the tuned layers.")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
) -> None:
    """LiT: tune the last layers of a text encoder against a locked image encoder; save it by name."""
    from xmodal.encoders.finetune import LiTTuner, finetune_on_dataset

    tuner = LiTTuner(trainable_layers=layers, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed)
    path = finetune_on_dataset(load_dataset(dataset, data), EmbeddingStore(cache), tuner, base=base,
                               image_encoder=image_encoder, name=name, image_views=image_view or (), backend=backend)
    losses = ", ".join(f"{v:.3f}" for v in tuner.history_)
    console.print(f"tuned {base} -> {name} in {tuner.seconds_:.0f} s (dev loss by epoch: {losses}; "
                  f"kept epoch {tuner.best_epoch_}) -> {path}", soft_wrap=True)


@app.command()
@_guard
def fit(
    dataset: Annotated[str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the fitted aligner (.npz).")],
    aligner: Annotated[str, typer.Option("--aligner", help=f"One of: {', '.join([*ALIGNERS, *TRAINED_ALIGNERS])}.")] = DEFAULT_ALIGNER,
    split: Annotated[str, typer.Option("--split")] = "train",
    text_encoder: TextEncOpt = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
) -> None:
    """Fit an aligner on the (text, image) pairs of a split and save it."""
    model = make_aligner(aligner)
    emb = embed_split(load_dataset(dataset, data).split(split), EmbeddingStore(cache), text_encoder, image_encoder, backend=backend)
    model.fit(emb.training_pairs(), **({"groups": emb.pair_items()} if isinstance(model, HeadAligner) else {}))
    path = model.save(out)
    console.print(f"fitted {model!r} on {len(emb.text_items)} pairs -> {path}")


@app.command("eval")
@_guard
def evaluate(
    dataset: Annotated[str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest.")],
    aligner: Annotated[Path, typer.Option("--aligner", help="A fitted aligner written by `xmodal fit`.")],
    split: Annotated[str, typer.Option("--split")] = "test",
    text_encoder: TextEncOpt = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    csls_k: CslsOpt = 0,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a fitted aligner: R@1/5/10, median and mean rank, both directions."""
    model = Aligner.load(aligner)
    emb = embed_split(load_dataset(dataset, data).split(split), EmbeddingStore(cache), text_encoder, image_encoder, backend=backend)
    metrics = evaluate_bidirectional(
        model.transform(emb.text, "text"), model.transform(emb.image, "image"),
        emb.text_items, emb.image_items, csls_k=csls_k,
    )
    if as_json:
        print(json.dumps(metrics, indent=1))
        return
    table = Table(title=f"{dataset}/{split}: {aligner.name}" + (f" + CSLS k={csls_k}" if csls_k else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.2f}")
    console.print(table)


SourceArg = Annotated[str, typer.Argument(help="'flickr8k', a .jsonl/.csv manifest, a folder of images, or a .txt file (one text a line).")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Only this split of a dataset (default: every item).")]


@index_app.command("build")
@_guard
def index_build(
    source: SourceArg,
    aligner: Annotated[Path, typer.Option("--aligner", help="A fitted aligner written by `xmodal fit`.")],
    out: Annotated[Path, typer.Option("--out", help="The index directory to write.")],
    split: SplitOpt = None,
    kind: Annotated[str, typer.Option("--kind", help=f"FAISS index: {', '.join(KINDS)} (auto: exact below 50,000 items, else HNSW).")] = "auto",
    text_encoder: TextEncOpt = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    csls_k: Annotated[int, typer.Option("--csls-k", min=1, help="CSLS neighbourhood size for `search --csls`.")] = 10,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
) -> None:
    """Index a gallery (images, or texts from a .txt file) in a fitted aligner's shared space."""
    items, modality = gallery_source(source, data_root=data, split=split)
    index = Index.build(items, Aligner.load(aligner), modality=modality, text_encoder=text_encoder, image_encoder=image_encoder,
                        kind=kind, store=EmbeddingStore(cache), backend=backend, csls_k=csls_k, progress=True)
    path = index.save(out)
    console.print(f"indexed {len(index)} {modality} items ({index.manifest()['faiss_index']}) -> {path}", soft_wrap=True)


@index_app.command("add")
@_guard
def index_add(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    source: SourceArg,
    split: SplitOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Add items to an index (only the new items are encoded)."""
    index = Index.load(index_dir, cache_dir=cache)
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
    image: Annotated[Optional[Path], typer.Option("--image", help="An image query (with a text query too: fused).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 10,
    csls: Annotated[bool, typer.Option("--csls", help="Score by CSLS against the gallery's captions (text queries).")] = False,
    fusion: Annotated[str, typer.Option("--fusion", help=f"How a text and an image query combine: {' or '.join(FUSIONS)}.")] = "mean",
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index by text, by image, or both: rank, score, id, path and caption."""
    hits = Index.load(index_dir, cache_dir=cache).search(query, image, k=k, csls=csls, fusion=fusion)
    if as_json:
        print(json.dumps({"query": query, "image": image and str(image), "results": [h.to_dict() for h in hits]}, indent=1))
        return
    _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    table = Table()
    for column in ("rank", "score", "id", "path", "caption"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", escape(hit.id), escape(hit.path or ""), escape(hit.captions[0] if hit.captions else ""))
    Console(width=max(console.width, 160)).print(table)


@app.command()
@_guard
def serve(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch threads per query encoding (1: one query is too small to share, and spare cores serve other requests).")] = 1,
    cache: CacheOpt = None,
) -> None:
    """Serve an index over HTTP: a search page at /, the API at /search (docs at /docs)."""
    import torch
    import uvicorn

    from xmodal.serve import create_app

    torch.set_num_threads(threads)
    index = Index.load(index_dir, cache_dir=cache)
    console.print(f"serving {len(index)} {index.modality} items from {index_dir} at http://{host}:{port}/", soft_wrap=True)
    uvicorn.run(create_app(index), host=host, port=port, log_level="warning")


@bench_app.command("flickr8k")
@_guard
def bench_flickr8k(
    text_encoder: TextEncOpt = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    aligner: Annotated[Optional[list[str]], typer.Option("--aligner", help="Repeat to pick aligners (default: every closed-form one; trained heads: head-linear, head-mlp-cca, ...).")] = None,
    csls_k: CslsOpt = 10,
    eval_split: Annotated[str, typer.Option("--eval-split", help="Split to evaluate on (dev for tuning).")] = "test",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a smoke run, not the protocol.")] = None,
    image_view: Annotated[Optional[list[str]], typer.Option("--image-view", help="Encoder of another view of the train images that trained heads also learn from (e.g. efficientnet-lite0-mirror; repeat).")] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
    results: Annotated[Path, typer.Option("--results", help="Markdown file whose section for these encoders is replaced.")] = Path("benchmarks/RESULTS.md"),
    json_dir: Annotated[Path, typer.Option("--json-dir", help="Folder for the JSON results.")] = Path("benchmarks/results"),
) -> None:
    """Fit every aligner on Flickr8k train, evaluate on the 1k test split, print the table."""
    result = run_flickr8k(
        data, text_encoder=text_encoder, image_encoder=image_encoder, aligners=aligner,
        csls_k=csls_k, cache_dir=cache, backend=backend, eval_split=eval_split, limit=limit,
        image_views=tuple(image_view or ()),
    )
    _print_bench(result)
    command = "xmodal bench flickr8k " + shlex.join(sys.argv[3:]) if len(sys.argv) > 3 else "xmodal bench flickr8k"
    views = "".join(f"_{v}" for v in result.image_views)
    name = f"flickr8k-{eval_split}_{text_encoder}_{image_encoder}{'_heads' if result.trained else ''}{views}"
    json_path = json_dir / f"{name.replace('+', '-')}.json"
    write_results(result, json_path, results, command.strip())
    console.print(f"wrote {json_path} and updated {results}", soft_wrap=True)


@bench_app.command("flickr8k-multi30k")
@_guard
def bench_flickr8k_multi30k(
    aligner: Annotated[Optional[list[str]], typer.Option("--aligner", help="Trained head(s) aligning every modality at once (default: head-linear; e.g. head-linear-pcmr).")] = None,
    fusion: Annotated[Optional[list[str]], typer.Option("--fusion", help=f"How fused queries combine modalities: {' or '.join(FUSIONS)} (repeat; default both).")] = None,
    csls_k: CslsOpt = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a smoke run, not the protocol.")] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
    results: Annotated[Path, typer.Option("--results", help="Markdown file whose section for this benchmark is replaced.")] = Path("benchmarks/RESULTS.md"),
    json_dir: Annotated[Path, typer.Option("--json-dir", help="Folder for the JSON results.")] = Path("benchmarks/results"),
) -> None:
    """Train one head per modality on Flickr8k+Multi30k; print R@1/5/10 for every modality pair and fused queries."""
    fusions = tuple(check_fusion(name) for name in fusion or FUSIONS)  # before any training
    started = time.perf_counter()
    runs = run_flickr8k_multi30k(data, aligners=aligner, csls_k=csls_k, fusions=fusions, cache_dir=cache, backend=backend, limit=limit)
    seconds = time.perf_counter() - started
    command = "xmodal bench flickr8k-multi30k " + shlex.join(sys.argv[3:])
    wide = Console(width=max(console.width, 150))
    for run in runs:
        title = multi30k_title(run, csls_k, limit)
        wide.print(_rich_table(*matrix_table(run), f"{title}: R@1/R@5/R@10, query (rows) -> gallery (columns)"))
        wide.print(_rich_table(*fused_table(run, fusions), f"{title}: fused queries -> image"))
    write_multi30k_results(runs, json_dir, results, command.strip(), seconds, csls_k=csls_k, limit=limit, fusions=fusions)
    wide.print(f"{seconds:.1f} s in all; updated {results}")


@app.command()
@_guard
def analyze(
    dataset: Annotated[str, typer.Argument(help="'flickr8k' or a .jsonl/.csv manifest (with train and dev splits).")] = "flickr8k",
    out: Annotated[Path, typer.Option("--out", help="Report folder (report.html, figures/, thumbs/, analysis.json).")] = Path("reports/analysis"),
    aligner: Annotated[Optional[list[str]], typer.Option("--aligner", help=f"Repeat to pick aligners (default: {', '.join(DEFAULT_ANALYSIS_ALIGNERS)}).")] = None,
    learned: Annotated[Optional[list[str]], typer.Option("--learned", help="Also train a learned similarity per space: mlp, bilinear (repeat).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to measure.")] = "test",
    failures: Annotated[int, typer.Option("--failures", min=0, help="Worst text queries shown in the gallery.")] = 8,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a quick look.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    text_encoder: TextEncOpt = "minilm",
    image_encoder: ImageEncOpt = "efficientnet-lite0",
    data: DataOpt = None,
    cache: CacheOpt = None,
    backend: BackendOpt = "onnx",
) -> None:
    """Measure the modality gap, geometry and similarity functions before and after each aligner; write an HTML report."""
    result = analyze_dataset(
        load_dataset(dataset, data), out, EmbeddingStore(cache), text_encoder=text_encoder, image_encoder=image_encoder,
        aligners=aligner or DEFAULT_ANALYSIS_ALIGNERS, split=split, learned=learned or (), limit=limit,
        n_failures=failures, seed=seed, backend=backend,
    )
    table = Table(title=f"{result.title}: geometry")
    for column in ("space", "centroid gap", "W2 exact", "CKA", "hub skew t2i", "mean R@10"):
        table.add_column(column, justify="left" if column == "space" else "right")
    for name, row in result.gaps.items():
        table.add_row(name, *(f"{row[c]:.3f}" for c in ("centroid gap", "W2 exact", "CKA", "hub skew t2i")), f"{row['mean R@10']:.1f}")
    console.print(table)
    console.print(f"report: {out / 'report.html'} ({result.seconds['total']:.1f} s)")


def _rich_table(columns: list[str], rows: list[list[str]], title: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _print_bench(result: BenchResult) -> None:
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
