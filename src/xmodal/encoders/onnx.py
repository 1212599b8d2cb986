"""ONNX Runtime fast path: export a torch image model once, cache it, run it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from xmodal.paths import default_cache_dir


def onnx_session(module, name: str, resolution: int, cache_dir: str | Path | None = None):
    """An ``onnxruntime.InferenceSession`` of ``module`` (input ``pixels``: N x 3 x R x R).

    The export is written to ``<cache_dir>/onnx/<name>-<resolution>.onnx`` the first time
    (atomically) and reused afterwards.
    """
    import onnxruntime as ort
    import torch

    path = Path(cache_dir or default_cache_dir()) / "onnx" / f"{name}-{resolution}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
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
        os.replace(tmp, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"pixels": np.zeros((1, 3, resolution, resolution), np.float32)})
    return session
