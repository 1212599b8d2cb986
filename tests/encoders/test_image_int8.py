"""int8 image encoders (``efficientnet-liteN-int8``): offline, a cache key of their own,
embeddings close to float ones, the quantised file made once (and identically) and re-used."""

from __future__ import annotations

import shutil
import socket
from typing import Any

import numpy as np
import pytest

from xmodal.core.arrays import unit_rows
from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders import onnx as onnx_module
from xmodal.encoders.image import CALIBRATION_CROPS, EfficientNetLiteEncoder, calibration_pixels

# Cosine of int8 to float lite0 embeddings, measured: min 0.991, mean 0.994 on these six test images
# (min 0.950, mean 0.9935 over the 7,000 Flickr8k train and test images: benchmarks/image_int8.py).
MIN_COSINE, MEAN_COSINE = 0.98, 0.99
INT8_FILE = "efficientnet-lite0-224-int8.onnx"


@pytest.fixture(scope="module")
def test_images(flickr8k: Any) -> list[str]:
    return [item.values["image"][0] for item in flickr8k.split("test").items[:6]]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the int8 encoder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.data
@pytest.mark.weights
def test_int8_is_offline_close_to_float_and_keyed_apart(offline, lite0_onnx, models_dir, test_images):
    int8 = get_encoder("efficientnet-lite0-int8", models_dir=models_dir)
    assert int8.name == "efficientnet-lite0-int8" and int8.dim == 1280
    assert int8.cache_key != lite0_onnx.cache_key and int8.cache_key.startswith(lite0_onnx.cache_key + "|int8")
    quantised, exact = int8.encode(test_images, batch_size=4), lite0_onnx.encode(test_images, batch_size=4)
    assert quantised.shape == (6, 1280) and quantised.dtype == np.float32
    assert np.abs(quantised - exact).max() > 1e-3  # another function: another cache key
    cosine = (unit_rows(quantised) * unit_rows(exact)).sum(axis=1)
    assert cosine.min() > MIN_COSINE and cosine.mean() > MEAN_COSINE, cosine
    np.testing.assert_allclose(int8.encode(test_images[:2], batch_size=1), quantised[:2], atol=1e-4)


@pytest.mark.data
@pytest.mark.weights
def test_the_int8_file_is_made_once_identically_and_reused(lite0_onnx, models_dir, tmp_path, monkeypatch, test_images):
    made = models_dir / "onnx" / INT8_FILE
    want = get_encoder("efficientnet-lite0-int8", models_dir=models_dir).encode(test_images[:3])  # made if missing
    recorded = made.with_name(made.name + ".sha256").read_text()
    # another models folder holding only the float export: int8 is quantised there, to the same bytes
    private = tmp_path / "models" / "onnx"
    private.mkdir(parents=True)
    for name in ("efficientnet-lite0-224.onnx", "efficientnet-lite0-224.onnx.sha256"):
        shutil.copy(models_dir / "onnx" / name, private / name)
    get_encoder("efficientnet-lite0-int8", models_dir=tmp_path / "models").encode(test_images[:1])
    assert (private / f"{INT8_FILE}.sha256").read_text() == recorded  # deterministic calibration

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("quantised again")

    monkeypatch.setattr(onnx_module, "quantize_static_int8", refuse)
    before = made.stat()
    again = get_encoder("efficientnet-lite0-int8", models_dir=models_dir).encode(test_images[:3])
    np.testing.assert_array_equal(again, want)
    assert (made.stat().st_ino, made.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_int8_names_for_every_variant_and_view(tmp_path):
    for name in ("efficientnet-lite1-int8", "efficientnet-lite2-mirror-int8", "efficientnet-lite0-int8@352[fit=pad]"):
        encoder = get_encoder(name, models_dir=tmp_path)
        assert isinstance(encoder, EfficientNetLiteEncoder) and encoder.quantized and encoder.name == name
    tta = get_encoder("efficientnet-lite0-tta-int8", models_dir=tmp_path)
    assert tta.name == "efficientnet-lite0-tta-int8"
    plain = get_encoder("efficientnet-lite0", models_dir=tmp_path)
    assert isinstance(plain, EfficientNetLiteEncoder) and not plain.quantized
    with pytest.raises(EncoderError, match="runs through ONNX Runtime: use the onnx backend"):
        get_encoder("efficientnet-lite0-int8", backend="torch", models_dir=tmp_path)


def test_calibration_is_fixed_and_prepared_like_inputs():
    batches = list(calibration_pixels(64, batch_size=50))
    assert [b.shape for b in batches] == [(50, 3, 64, 64), (50, 3, 64, 64), (CALIBRATION_CROPS - 100, 3, 64, 64)]
    pixels = np.concatenate(batches)
    assert pixels.dtype == np.float32 and pixels.min() >= -127 / 128 and pixels.max() <= 1.0  # (x - 127) / 128
    np.testing.assert_array_equal(np.concatenate(list(calibration_pixels(64, batch_size=50))), pixels)
    assert len({p.tobytes() for p in pixels}) == CALIBRATION_CROPS  # distinct crops
