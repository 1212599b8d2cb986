"""The ``xmodal`` command line: encode, fit, eval, bench."""

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
from xmodal.align.heads import HeadAligner
from xmodal.align.presets import ALIGNERS, DEFAULT_ALIGNER, TRAINED_ALIGNERS, make_aligner
from xmodal.bench import TABLE_COLUMNS, BenchResult, run_flickr8k, write_results
from xmodal.bench_multi30k import fused_markdown, matrix_markdown, multi30k_title, run_flickr8k_multi30k, write_multi30k_results
from xmodal.embeddings import embed_split
from xmodal.data import DataError, load_dataset
from xmodal.encoders import ENCODERS, EncoderError, get_encoder
from xmodal.evaluate import evaluate_bidirectional
from xmodal.fusion import FUSIONS, check_fusion
from xmodal.store import EmbeddingStore

app = typer.Typer(
    help="Cross-modal retrieval by aligning pretrained embedding spaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="End-to-end benchmarks.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
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
        wide.print(_markdown_table(matrix_markdown(run), f"{title}: R@1/R@5/R@10, query (rows) -> gallery (columns)"))
        wide.print(_markdown_table(fused_markdown(run, fusions), f"{title}: fused queries -> image"))
    write_multi30k_results(runs, json_dir, results, command.strip(), seconds, csls_k=csls_k, limit=limit, fusions=fusions)
    wide.print(f"{seconds:.1f} s in all; updated {results}")


def _markdown_table(markdown: str, title: str) -> Table:
    """A rich Table from a Markdown table (header, separator, rows)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()]
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows[2:]:
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
