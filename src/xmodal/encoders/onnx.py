"""ONNX Runtime fast path: export a torch image model once, cache it, run it; optionally
quantised to int8 (static QDQ, :func:`quantize_static_int8`).

Every file written here (an export, its int8 version) has its SHA-256 written beside it
(``.sha256``), checked before each use: a damaged or unchecked file is reported and made
again, never fed to ONNX Runtime (:func:`checked_file`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmodal.core.config import onnx_dir
from xmodal.core.files import atomic_path, file_digest, write_text_atomic
from xmodal.encoders.base import EncoderError

log = logging.getLogger("xmodal")

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

INT8_STATIC = "int8-qdq-u8s8-per-channel-minmax"  # what quantize_static_int8 computes: part of cache keys


def onnx_session(
    module: torch.nn.Module,
    name: str,
    resolution: int,
    models_dir: str | Path | None = None,
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
) -> ort.InferenceSession:
    """An ``onnxruntime.InferenceSession`` of ``module`` (input ``pixels``: N x 3 x R x R).

    The export is written to ``<models_dir>/onnx/<name>-<resolution>.onnx`` the first time
    (atomically) and reused afterwards. With ``calibration`` (batches of pixels, called only
    when the file is made) the session runs its int8 version, ``<name>-<resolution>-int8.onnx``,
    quantised once beside it.
    """
    import onnxruntime as ort
    import torch

    path = checked_file(
        onnx_dir(models_dir) / f"{name}-{resolution}.onnx", lambda tmp: _export(module, resolution, tmp)
    )
    if calibration is not None:
        source = path
        path = checked_file(
            source.with_name(f"{source.stem}-int8.onnx"),
            lambda tmp: quantize_static_int8(source, tmp, ({"pixels": batch} for batch in calibration())),
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types
        raise EncoderError(f"ONNX Runtime cannot load {path}: {error}; delete it to export it again") from None
    session.run(None, {"pixels": np.zeros((1, 3, resolution, resolution), np.float32)})
    return session


def _export(module: torch.nn.Module, resolution: int, tmp: Path) -> None:
    import torch

    example = torch.zeros(2, 3, resolution, resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def checked_file(path: Path, write: Callable[[Path], object]) -> Path:
    """``path``, written atomically by ``write(tmp)`` if missing, or damaged (its recorded
    SHA-256, ``PATH.sha256``, is missing or differs)."""
    recorded = path.with_name(path.name + ".sha256")
    if path.is_file() and (not recorded.is_file() or recorded.read_text().strip() != file_digest(path)["sha256"]):
        log.warning("ONNX export %s has no recorded checksum or does not match it: exporting it again", path)
        path.unlink()
    if not path.is_file():
        with atomic_path(path, suffix=".onnx") as tmp:
            write(tmp)
        write_text_atomic(recorded, str(file_digest(path)["sha256"]) + "\n")
    return path


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime.quantization's notes (it logs "consider pre-processing" and the like
    to the root logger, and warns)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_static_int8(source: Path, target: Path, inputs: Iterable[dict[str, np.ndarray]]) -> None:
    """Quantise the model ``source`` to int8 into ``target``: QDQ, weights signed per output
    channel, activations unsigned over the (min, max) ranges they take on the feeds ``inputs``.

    The graph is first simplified (``quant_pre_process``: shape inference and ONNX Runtime's
    constant folding; EfficientNet's "same" padding becomes a plain ``Pad``, quantised and fused
    into the convolution: without it int8 runs no faster than float).
    """
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # type: ignore[import-untyped]

    feeds = iter(inputs)

    class Feeds(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    with quiet_quantizer(), tempfile.TemporaryDirectory(dir=target.parent) as folder:
        simplified = Path(folder) / "simplified.onnx"
        quant_pre_process(str(source), str(simplified))
        quantize_static(
            simplified, target, Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
