"""ONNX Runtime path for sentence-transformers text encoders (``minilm-onnx``, ``mpnet-onnx``).

The folder's transformer is exported once with ``torch.onnx.export`` (dynamic batch and
sequence axes) into ``<models>/onnx/text-<NAME>-<HASH>.onnx`` (atomically; ``HASH`` comes from
the torch encoder's cache key, so a re-tuned model gets a new export), checked against the
torch model on a few sentences, and its SHA-256 written beside it (``.sha256``), checked before
each use as for the image exports. Encoding then needs no torch model: the folder's own fast
tokenizer (same ``max_seq_length``, truncation and lower-casing as sentence-transformers), texts
sorted by token count so that each batch pads little, ONNX Runtime, then the pooling
(``1_Pooling/config.json``: cls, mean, max or mean_sqrt_len_tokens) and ``Normalize`` that the
folder's ``modules.json`` lists, in numpy.

The float path computes the torch function to float rounding (max abs difference ~1e-7, well
under 1e-5), so it shares the torch encoder's ``cache_key``: embeddings cached by ``minilm`` are
hits for ``minilm-onnx`` and back. ``-onnx-int8`` (weights of the matrix products quantised to
int8 per channel, activations dynamically: ``onnxruntime.quantization.quantize_dynamic``)
computes another function and has a key of its own.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from xmodal.core.config import onnx_dir
from xmodal.encoders.base import EncoderError, check_texts
from xmodal.encoders.onnx import checked_file, quiet_quantizer
from xmodal.encoders.text import SentenceTransformerEncoder

if TYPE_CHECKING:
    import onnxruntime as ort

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens")
_LEGACY_POOLING = {  # sentence-transformers' older Pooling configs: one flag per mode
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}
QUANTIZATION = "int8-per-channel-matmul-float-ffn-out"  # what -onnx-int8 computes, part of its cache key
EXPORT_TOLERANCE = 1e-5  # a fresh export must match the torch model this closely, or is refused
_CHECK_TEXTS = (
    "A dog runs through the snow .",
    "Zwei Kinder spielen am Strand, während ein Hund bellt — très joli ! 日本語",
    "a very long caption " * 120,  # longer than max_seq_length: truncated
)


class OnnxSentenceEncoder:
    """A sentence-transformers text model run through ONNX Runtime (``quantized``: int8)."""

    modality = "text"

    def __init__(self, name: str, source: SentenceTransformerEncoder, models_dir: Path, quantized: bool = False):
        self.name = name
        self.source = source  # the torch encoder: its folder, its cache key, and the export's model
        self.path = source.path
        self.models_dir = Path(models_dir)
        self.quantized = quantized
        self.max_length, self.lower_case, self.pooling, self.normalize, self._dim = _folder_settings(name, self.path)

    @property
    def dim(self) -> int:
        return self._dim

    @functools.cached_property
    def cache_key(self) -> str:
        """The torch encoder's key for the float path (same function to ~1e-7); int8 adds its own."""
        key = self.source.cache_key
        return f"{key}|onnx-{QUANTIZATION}" if self.quantized else key

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The folder's own (fast) tokenizer, as sentence-transformers loads it."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except Exception as error:  # transformers raises many types
            raise EncoderError(f"{self.name}: cannot load the tokenizer in {self.path}: {error}") from None

    @functools.cached_property
    def session(self) -> ort.InferenceSession:
        """The ONNX Runtime session (exported, and for int8 quantised, on first use)."""
        import onnxruntime as ort

        path = self._export()
        if self.quantized:
            path = checked_file(path.with_name(path.stem + "-int8.onnx"), lambda tmp: _quantize(path, tmp))
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types
            raise EncoderError(f"ONNX Runtime cannot load {path}: {error}; delete it to export it again") from None

    def _export(self) -> Path:
        digest = self.source.cache_key.rsplit("|", 1)[-1]
        base = self.source.name.replace("/", "_").replace(":", "_")
        path = onnx_dir(self.models_dir) / f"text-{base}-{digest}.onnx"
        return checked_file(path, lambda tmp: self._write_export(tmp))

    def _write_export(self, tmp: Path) -> None:
        """Export the transformer of the torch model to ``tmp`` and check it against torch."""
        import onnxruntime as ort
        import torch

        model = SentenceTransformerEncoder(self.source.name, self.path).model  # private: changed below
        want = model.encode(list(_CHECK_TEXTS), convert_to_numpy=True)
        transformer = model[0].auto_model.eval()
        if hasattr(transformer, "set_attn_implementation"):
            transformer.set_attn_implementation("eager")  # plain MatMul/Softmax: no data-dependent mask branches
        names = list(self.tokenizer.model_input_names)
        example = self.tokenizer(["a b", "a longer example sentence"], padding=True, return_tensors="pt")
        axes = {0: "batch", 1: "sequence"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _token_embeddings(transformer, names),
                tuple(example[n] for n in names),
                str(tmp),
                input_names=names,
                output_names=["token_embeddings"],
                dynamic_axes=dict.fromkeys([*names, "token_embeddings"], axes),
                opset_version=17,
                dynamo=False,
            )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = self._encode_with(session, list(_CHECK_TEXTS), batch_size=len(_CHECK_TEXTS))
        gap = float(np.abs(got - want).max())
        if gap > EXPORT_TOLERANCE:
            raise EncoderError(f"{self.name}: the ONNX export differs from the torch model by {gap:.2e}; not kept")

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(values, self.name)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._encode_with(self.session, texts, batch_size, progress)

    def _encode_with(
        self, session: ort.InferenceSession, texts: list[str], batch_size: int, progress: bool = False
    ) -> np.ndarray:
        if self.lower_case:
            texts = [text.lower() for text in texts]
        features = self.tokenizer(texts, truncation="longest_first", max_length=self.max_length)
        inputs = [i.name for i in session.get_inputs()]
        pads = {"input_ids": self.tokenizer.pad_token_id or 0, "token_type_ids": self.tokenizer.pad_token_type_id}
        lengths = np.array([len(ids) for ids in features["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest first, as sentence-transformers does
        left = self.tokenizer.padding_side == "left"
        out = np.zeros((len(texts), self.dim), np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=f"{self.name} (onnx)", disable=not progress, unit="batch"):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            feed = {name: np.full((len(rows), width), pads.get(name, 0), np.int64) for name in inputs}
            for r, i in enumerate(rows):
                span = slice(width - lengths[i], width) if left else slice(0, lengths[i])
                for name in inputs:
                    feed[name][r, span] = features[name][i]
            tokens = session.run(None, feed)[0]
            out[rows] = _pool(tokens, feed["attention_mask"], self.pooling, self.normalize)
        return out


def _token_embeddings(transformer: Any, names: list[str]) -> Any:
    """A ``torch.nn.Module``: ``forward(*inputs)`` (named ``names``) -> the last hidden state."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.transformer(**dict(zip(names, inputs, strict=True)), return_dict=True).last_hidden_state

    return TokenEmbeddings().eval()


def _pool(tokens: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """sentence-transformers' ``Pooling`` (one ``mode``) and ``Normalize`` over token embeddings."""
    weights = mask[..., None].astype(np.float32)
    if mode == "cls":
        pooled = tokens[:, 0]
    elif mode == "max":
        pooled = np.where(weights > 0, tokens, np.float32(-1e9)).max(axis=1)
    else:
        total = (tokens * weights).sum(axis=1)
        count = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        pooled = total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
    return pooled.astype(np.float32)


def _folder_settings(name: str, folder: Path) -> tuple[int, bool, str, bool, int]:
    """``(max_seq_length, do_lower_case, pooling mode, normalize, dim)`` from a model folder,
    refusing what this path does not compute as sentence-transformers does."""

    def read(path: Path) -> dict[str, Any]:
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise EncoderError(f"{name}: cannot read {path}: {error}") from None

    modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").is_file() else None
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules or []]
    if (
        not kinds
        or kinds[0] != "Transformer"
        or "Pooling" not in kinds
        or set(kinds) - {"Transformer", "Pooling", "Normalize"}
    ):
        raise EncoderError(
            f"{name}: the ONNX path runs Transformer, Pooling and Normalize modules; {folder} has "
            f"{', '.join(kinds) or 'no modules.json'}: use the torch encoder"
        )
    assert modules is not None
    transformer = read(folder / modules[0]["path"] / "sentence_bert_config.json")
    if "max_seq_length" not in transformer:
        raise EncoderError(f"{name}: no max_seq_length in {folder}/sentence_bert_config.json: use the torch encoder")
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file() and read(st_config).get("default_prompt_name"):
        raise EncoderError(f"{name}: {st_config} names a default prompt, which the ONNX path does not add")
    pooling = read(folder / modules[kinds.index("Pooling")]["path"] / "config.json")
    mode = pooling.get("pooling_mode") or [
        _LEGACY_POOLING.get(k, k) for k, on in pooling.items() if k.startswith("pooling_mode_") and on is True
    ]
    modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in POOLING_MODES or pooling.get("include_prompt", True) is False:
        raise EncoderError(
            f"{name}: pooling {pooling} has no ONNX path (one of {', '.join(POOLING_MODES)}): use the torch encoder"
        )
    dim = pooling.get("embedding_dimension") or pooling.get("word_embedding_dimension")
    if not dim:
        dim = read(folder / modules[0]["path"] / "config.json")["hidden_size"]
    lower = bool(transformer.get("do_lower_case", False))
    return int(transformer["max_seq_length"]), lower, modes[0], "Normalize" in kinds, int(dim)


def _quantize(source: Path, target: Path) -> None:
    """int8 weights (per output channel) for the matrix products by a weight, activations quantised
    per batch; the feed-forward output projections (fed by GELU, whose outputs have outliers that
    8 bits clip: mpnet loses most of its meaning with them) stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    made_by = {output: node for node in graph.node for output in node.output}

    def after_gelu(node: Any, depth: int = 4) -> bool:  # an Erf a few steps upstream
        sources = [made_by[i] for i in node.input if i in made_by]
        return any(s.op_type == "Erf" or (depth > 1 and after_gelu(s, depth - 1)) for s in sources)

    nodes = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights and not after_gelu(n)]
    with quiet_quantizer():
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
        )  # fmt: skip


def cpu_threads() -> int:
    """The CPUs this process may run on (``OMP_NUM_THREADS`` if set): ONNX Runtime's intra-op threads."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
