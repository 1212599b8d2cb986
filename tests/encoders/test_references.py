"""Encoders by reference: a user's ONNX image model with its JSON specification, Hugging Face
models by folder or id, and precomputed vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders.onnx_file import OnnxFileEncoder

IMAGES = ["2513260012_03d33305cf.jpg", "1012212859_01547e3f17.jpg", "3385593926_d3e9c21170.jpg"]


@pytest.mark.data
@pytest.mark.weights
def test_onnx_file_with_its_spec_computes_the_packaged_encoder(lite0_onnx, models_dir, data_root, tmp_path):
    """EfficientNet-Lite0 exported to ONNX, fed by a specification that says xmodal's own
    preprocessing ((x - 127) / 128 is mean 127/255, std 128/255): the same embeddings."""
    paths = [str(data_root / "flickr8k" / "Images" / name) for name in IMAGES]
    expected = lite0_onnx.encode(paths)  # exports models_dir/onnx/efficientnet-lite0-224.onnx
    model = tmp_path / "lite0.onnx"
    model.write_bytes((models_dir / "onnx" / "efficientnet-lite0-224.onnx").read_bytes())
    spec = {"size": 224, "mean": [127 / 255] * 3, "std": [128 / 255] * 3, "input_name": "pixels", "output": "embedding"}
    model.with_suffix(".json").write_text(json.dumps(spec))
    encoder = get_encoder(f"onnx:{model}")
    assert isinstance(encoder, OnnxFileEncoder) and encoder.modality == "image" and encoder.dim == 1280
    np.testing.assert_allclose(encoder.encode(paths, batch_size=2), expected, rtol=1e-4, atol=1e-4)
    key = encoder.cache_key
    model.with_suffix(".json").write_text(json.dumps({**spec, "fit": "pad"}))
    assert get_encoder(f"onnx:{model}").cache_key != key  # other preprocessing, other cache rows


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "its specification .*lite0.json is missing"),
        ({"input": "text"}, "input 'text': ONNX files are image models here"),
        ({"sizes": 224}, "unknown key 'sizes'"),
        ({"size": 0}, "size must be a whole number of pixels"),
        ({"mean": [0.5, 0.5]}, "mean must be three numbers"),
        ({"layout": "CHW"}, "layout must be NCHW or NHWC"),
    ],
)
def test_onnx_spec_errors(tmp_path: Path, spec, message):
    model = tmp_path / "lite0.onnx"
    model.write_bytes(b"not checked before the spec")
    if spec is not None:
        model.with_suffix(".json").write_text(json.dumps(spec))
    with pytest.raises(EncoderError, match=message):
        get_encoder(f"onnx:{model}")


def test_missing_onnx_file(tmp_path: Path):
    with pytest.raises(EncoderError, match="ONNX file not found: .*gone.onnx"):
        get_encoder(f"onnx:{tmp_path / 'gone.onnx'}")


@pytest.mark.weights
def test_hf_folder_is_the_same_model(minilm):
    encoder = get_encoder(f"hf:{minilm.path}")
    texts = ["A dog runs in the snow.", "Two children at the beach."]
    np.testing.assert_allclose(encoder.encode(texts), minilm.encode(texts), rtol=1e-5, atol=1e-6)


def test_hf_id_not_in_the_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(EncoderError, match="not in the local Hugging Face cache, and downloads are off"):
        get_encoder("hf:sentence-transformers/all-MiniLM-L12-v2")
    with pytest.raises(EncoderError, match="expected hf:ORG/NAME or hf:/path"):
        get_encoder("hf:just-a-name")


def test_vector_encoder_reads_query_files(tmp_path: Path):
    np.save(tmp_path / "a.npy", np.arange(4, dtype=np.float32))
    np.save(tmp_path / "b.npy", np.ones((1, 4), np.float32))
    (tmp_path / "c.txt").write_text("1, 2, 3, 4\n")
    encoder = get_encoder("vector")
    assert encoder.modality == "vector" and get_encoder("vector:").cache_key == encoder.cache_key
    rows = encoder.encode([str(tmp_path / n) for n in ("a.npy", "b.npy", "c.txt")])
    np.testing.assert_array_equal(rows, [[0, 1, 2, 3], [1, 1, 1, 1], [1, 2, 3, 4]])
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    with pytest.raises(EncoderError, match="nan.npy: the vector holds NaN"):
        encoder.encode([str(tmp_path / "nan.npy")])
    with pytest.raises(EncoderError, match="vector file not found"):
        encoder.encode([str(tmp_path / "gone.npy")])


class _Payload:
    """Unpickling this runs a command: what a hostile pytorch_model.bin does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.weights
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hostile file
def test_a_pickle_payload_in_a_model_folder_is_refused_not_run(minilm, tmp_path):
    import pickle
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(minilm.path, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    encoder = get_encoder(f"st:{folder}")
    with pytest.raises(EncoderError, match=f"st:{folder}: cannot load the model in {folder}"):
        encoder.encode(["a dog"])
    assert not marker.exists()
