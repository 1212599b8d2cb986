"""Defaults in one place: encoder names, backend, scoring, and where files live.

Three folders, each overridable by an environment variable (and by a command-line option):

* the **data root** (``$XMODAL_DATA``, default ``../shared/data``): datasets, read only;
* the **cache** (``$XMODAL_CACHE``, default ``.cache/xmodal``): embeddings under
  ``embeddings/``, keyed by content; deleting it costs only re-encoding;
* the **models folder** (``$XMODAL_MODELS``, default ``.xmodal/models``): encoders tuned by
  ``xmodal finetune`` (one folder each, by name), ONNX exports under ``onnx/`` and packaged
  models unpacked once; kept apart from the cache, so cleaning the cache never deletes a
  tuned model.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "XMODAL_DATA"
CACHE_ENV = "XMODAL_CACHE"
MODELS_ENV = "XMODAL_MODELS"

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
DEFAULT_ENCODERS = {"text": DEFAULT_TEXT_ENCODER, "image": DEFAULT_IMAGE_ENCODER}
BACKENDS = ("onnx", "torch")  # image encoders: ONNX Runtime, or eager torch
DEFAULT_BACKEND = "onnx"
DEFAULT_ALIGNER = "cca-256-weighted"
DEFAULT_METRIC = "cosine"
DEFAULT_CSLS_K = 10  # CSLS neighbourhood of a fitted model's scoring (0: plain similarity)
FUSIONS = ("mean", "score")  # how queries of several modalities combine
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")


def default_data_root() -> Path:
    """``$XMODAL_DATA`` if set, else ``../shared/data`` relative to the working directory."""
    return Path(os.path.abspath(os.path.expanduser(os.environ.get(DATA_ENV) or "../shared/data")))


def default_cache_dir() -> Path:
    """``$XMODAL_CACHE``, else ``.cache/xmodal`` under the current directory."""
    return Path(os.environ.get(CACHE_ENV) or ".cache/xmodal")


def default_models_dir() -> Path:
    """``$XMODAL_MODELS``, else ``.xmodal/models`` under the current directory."""
    return Path(os.environ.get(MODELS_ENV) or ".xmodal/models")


def embeddings_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the embedding cache keeps its files."""
    return Path(cache_dir or default_cache_dir()) / "embeddings"


def onnx_dir(models_dir: str | Path | None = None) -> Path:
    """Where ONNX exports of the image encoders are kept."""
    return Path(models_dir or default_models_dir()) / "onnx"
