"""A user's own image model as an ONNX file: ``onnx:PATH`` in the registry.

Next to ``model.onnx`` lies ``model.json``, which says how to feed it::

    {"input": "image", "size": 224, "fit": "crop",
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "input_name": "pixels", "output": 0, "normalize": false}

- ``input``: the kind of value the model reads; ``image`` (text models come through ``hf:`` or
  ``st:``, which bring their tokenizers);
- ``size``: the square input side in pixels; ``fit``: ``crop`` (shorter side to ``size``, centre
  crop) or ``pad`` (longer side to ``size``, centred on the background);
- ``mean``, ``std``: per RGB channel, on pixels scaled to 0..1 (``(x / 255 - mean) / std``);
  defaults: ImageNet's;
- ``layout``: ``NCHW`` (default) or ``NHWC``;
- ``input_name``: the graph input to feed (default: the first); ``output``: the output's name
  or position (default 0), a ``(batch, dim)`` array, or ``(batch, tokens, dim)`` mean-pooled;
- ``normalize``: L2-normalise the output rows (default false);
- ``background``: the colour transparency is flattened onto (default white; null keeps it).

The cache key is the SHA-256 of the ONNX file and of the specification, so a changed model or
preprocessing never serves stale embeddings.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.data.images import DEFAULT_BACKGROUND, check_background, load_image
from xmodal.encoders.base import EncoderError
from xmodal.encoders.image import FITS, fitted_pixels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPEC_KEYS = {"input", "size", "fit", "mean", "std", "layout", "input_name", "output", "normalize", "background"}


class OnnxFileEncoder:
    """Embeddings of image files by an ONNX model, fed as its JSON specification says."""

    modality = "image"

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self.name = f"onnx:{path}"
        if not self.path.is_file():
            raise EncoderError(f"{self.name}: ONNX file not found: {self.path}")
        spec_file = self.path.with_suffix(".json")
        if not spec_file.is_file():
            raise EncoderError(f"{self.name}: its specification {spec_file} is missing (see xmodal.encoders.onnx_file)")
        try:
            spec = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise EncoderError(f"{spec_file}: not a JSON specification: {error}") from None
        self.spec = _check_spec(spec, spec_file)
        self.fill = check_background(self.spec["background"])
        self._spec_text = json.dumps(self.spec, sort_keys=True)

    @functools.cached_property
    def cache_key(self) -> str:
        digest = hashlib.sha256(self.path.read_bytes())
        digest.update(self._spec_text.encode())
        return f"onnx|{digest.hexdigest()[:24]}"

    @functools.cached_property
    def _session(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise EncoderError(f"{self.name}: ONNX Runtime cannot load {self.path}: {error}") from None

    @functools.cached_property
    def dim(self) -> int:
        return int(self._run(np.zeros((1, *self._input_shape()), np.float32)).shape[1])

    def _input_shape(self) -> tuple[int, int, int]:
        size = self.spec["size"]
        return (3, size, size) if self.spec["layout"] == "NCHW" else (size, size, 3)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        session = self._session
        name = self.spec["input_name"] or session.get_inputs()[0].name
        outputs = session.run(None, {name: batch})
        wanted = self.spec["output"]
        if isinstance(wanted, str):
            names = [o.name for o in session.get_outputs()]
            if wanted not in names:
                raise EncoderError(f"{self.name}: no output {wanted!r}; outputs: {', '.join(names)}")
            out = outputs[names.index(wanted)]
        else:
            out = outputs[wanted]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out.mean(axis=1)
        if out.ndim != 2:
            raise EncoderError(f"{self.name}: expected a (batch, dim) output, got shape {out.shape}")
        if self.spec["normalize"]:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        paths = list(values)
        mean = np.asarray(self.spec["mean"], np.float32)
        std = np.asarray(self.spec["std"], np.float32)
        chunks = []
        for start in range(0, len(paths), batch_size):
            pixels = [
                fitted_pixels(load_image(p, self.spec["background"]), self.spec["size"], self.spec["fit"], self.fill)
                for p in paths[start : start + batch_size]
            ]
            batch = (np.stack(pixels) / 255.0 - mean) / std
            if self.spec["layout"] == "NCHW":
                batch = batch.transpose(0, 3, 1, 2)
            chunks.append(self._run(np.ascontiguousarray(batch, dtype=np.float32)))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)


def _check_spec(spec: Any, where: Path) -> dict[str, Any]:
    """The specification with its defaults, every field checked."""
    if not isinstance(spec, dict):
        raise EncoderError(f"{where}: expected a JSON object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise EncoderError(f"{where}: unknown key {sorted(unknown)[0]!r}; keys: {', '.join(sorted(SPEC_KEYS))}")
    full = {
        "input": "image", "size": 224, "fit": "crop", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "layout": "NCHW", "input_name": None, "output": 0, "normalize": False, "background": DEFAULT_BACKGROUND,
        **spec,
    }  # fmt: skip
    if full["input"] != "image":
        raise EncoderError(f"{where}: input {full['input']!r}: ONNX files are image models here (text: hf: or st:)")
    size = full["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        raise EncoderError(f"{where}: size must be a whole number of pixels from 8 to 4096, got {size!r}")
    if full["fit"] not in FITS:
        raise EncoderError(f"{where}: fit must be one of {', '.join(FITS)}, got {full['fit']!r}")
    for key in ("mean", "std"):
        value = full[key]
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            raise EncoderError(f"{where}: {key} must be three numbers (R, G, B), got {value!r}")
    if not all(v > 0 for v in full["std"]):
        raise EncoderError(f"{where}: std must be positive, got {full['std']!r}")
    if full["layout"] not in ("NCHW", "NHWC"):
        raise EncoderError(f"{where}: layout must be NCHW or NHWC, got {full['layout']!r}")
    if not isinstance(full["output"], (str, int)) or isinstance(full["output"], bool):
        raise EncoderError(f"{where}: output must be a name or a position, got {full['output']!r}")
    return full
