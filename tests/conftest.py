"""Shared fixtures: the real Flickr8k data and real packaged encoders (loaded once)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "flickr8k").is_dir():
        pytest.skip(f"real Flickr8k not found under {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def flickr8k(data_root):
    from xmodal.data import load_flickr8k

    return load_flickr8k(data_root)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache folder for the session: the ONNX export is made once."""
    return tmp_path_factory.mktemp("xmodal-cache")


@pytest.fixture(scope="session")
def minilm(cache_dir):
    from xmodal.encoders import get_encoder

    return get_encoder("minilm", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def lite0_onnx(cache_dir):
    from xmodal.encoders import get_encoder

    return get_encoder("efficientnet-lite0", backend="onnx", cache_dir=cache_dir)
