"""ONNX Runtime fast path: export a torch image model once, cache it, run it.

An export's SHA-256 is written beside it (``.sha256``) and checked before each use: a damaged
or unchecked export is reported and exported again, never fed to ONNX Runtime.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from xmodal.core.config import onnx_dir
from xmodal.core.files import atomic_path, file_digest, write_text_atomic
from xmodal.encoders.base import EncoderError

log = logging.getLogger("xmodal")

if TYPE_CHECKING:
    import onnxruntime as ort


def onnx_session(
    module: torch.nn.Module, name: str, resolution: int, models_dir: str | Path | None = None
) -> ort.InferenceSession:
    """An ``onnxruntime.InferenceSession`` of ``module`` (input ``pixels``: N x 3 x R x R).

    The export is written to ``<models_dir>/onnx/<name>-<resolution>.onnx`` the first time
    (atomically) and reused afterwards.
    """
    import onnxruntime as ort

    path = onnx_dir(models_dir) / f"{name}-{resolution}.onnx"
    recorded = path.with_name(path.name + ".sha256")
    if path.is_file() and (not recorded.is_file() or recorded.read_text().strip() != file_digest(path)["sha256"]):
        log.warning("ONNX export %s has no recorded checksum or does not match it: exporting it again", path)
        path.unlink()
    if not path.is_file():
        example = torch.zeros(2, 3, resolution, resolution)
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
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
        write_text_atomic(recorded, str(file_digest(path)["sha256"]) + "\n")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types
        raise EncoderError(f"ONNX Runtime cannot load {path}: {error}; delete it to export it again") from None
    session.run(None, {"pixels": np.zeros((1, 3, resolution, resolution), np.float32)})
    return session
