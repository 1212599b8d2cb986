"""The embedding cache: content-keyed, so a second run encodes nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from xmodal.encoders import get_encoder
from xmodal.store import EmbeddingStore, content_key


@pytest.mark.weights
def test_second_call_is_served_from_disk(tmp_path, minilm):
    texts = ["A dog runs .", "A girl climbs stairs ."]
    store = EmbeddingStore(tmp_path)
    first = store.embed(minilm, texts, label="unit/text")
    again = EmbeddingStore(tmp_path).embed(minilm, texts)
    np.testing.assert_array_equal(first, again)
    assert (store.hits, store.misses) == (0, 1)
    files = list((tmp_path / "embeddings" / "minilm").glob("*.npy"))
    assert len(files) == 1 and files[0].with_suffix(".json").is_file()


@pytest.mark.weights
def test_cache_hit_does_not_load_the_model(tmp_path, minilm):
    texts = ["A cat sleeps ."]
    EmbeddingStore(tmp_path).embed(minilm, texts)
    fresh = get_encoder("minilm", models_dir=tmp_path)
    store = EmbeddingStore(tmp_path)
    store.embed(fresh, texts)
    assert store.hits == 1 and "model" not in vars(fresh)


@pytest.mark.data
def test_key_follows_content_not_path(tmp_path, flickr8k):
    original = flickr8k.split("test").items[0].values["image"][0]
    copy = tmp_path / "renamed.jpg"
    shutil.copy(original, copy)
    key = "efficientnet-lite0|onnx"
    assert content_key(key, [original], "image") == content_key(key, [str(copy)], "image")
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert content_key(key, [original], "image") != content_key(key, [str(copy)], "image")
    assert content_key(key, ["a", "b"], "text") != content_key(key, ["b", "a"], "text")
    assert content_key(key, ["ab"], "text") != content_key(key, ["a", "b"], "text")


@pytest.mark.data
@pytest.mark.weights
def test_concatenation_caches_each_part(tmp_path, lite0_onnx, flickr8k):
    paths = [item.values["image"][0] for item in flickr8k.split("test").items[:2]]
    store = EmbeddingStore(tmp_path)
    store.embed(lite0_onnx, paths)
    both = get_encoder("efficientnet-lite0+efficientnet-lite1", models_dir=tmp_path)
    emb = store.embed(both, paths)
    assert emb.shape == (2, 2560)
    assert (store.hits, store.misses) == (1, 2)  # lite0 from the cache, lite1 encoded


@pytest.mark.weights
def test_missing_image_is_reported_before_encoding(tmp_path, lite0_onnx):
    with pytest.raises(FileNotFoundError, match="cannot read image file .*nothing.jpg"):
        EmbeddingStore(tmp_path).embed(lite0_onnx, [str(tmp_path / "nothing.jpg")])
