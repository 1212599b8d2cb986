"""A real slice of Flickr8k through the real encoders, the aligners and the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import Aligner, CCAAligner, ProcrustesAligner
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, embed_split

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def slice_embeddings(flickr8k, cache_dir):
    store = EmbeddingStore(cache_dir)
    train = embed_split(flickr8k.split("train").subset(200), store, "minilm", "efficientnet-lite0", progress=False)
    test = embed_split(flickr8k.split("test").subset(100), store, "minilm", "efficientnet-lite0", progress=False)
    return train, test


@pytest.mark.parametrize(
    "aligner", [CCAAligner(n_components=32, reg=1.0, weight_power=0.5), ProcrustesAligner("text", "image")]
)
def test_aligned_retrieval_is_far_above_chance(slice_embeddings, aligner, tmp_path):
    train, test = slice_embeddings
    pairs = train.training_pairs()
    assert pairs["text"].shape == (1000, 384) and pairs["image"].shape == (1000, 1280)
    aligner.fit(pairs)
    text, image = aligner.transform(test.text, "text"), aligner.transform(test.image, "image")
    metrics = evaluate_bidirectional(text, image, test.text_items, test.image_items, csls_k=10)
    # 100 test images: chance R@10 is 10% for text->image and ~41% for image->text (5 positives).
    assert metrics["t2i/R@10"] > 50
    assert metrics["i2t/R@10"] > 60
    assert metrics["t2i/R@1"] > 10
    # The saved aligner reproduces the same numbers.
    loaded = Aligner.load(aligner.save(tmp_path / "aligner.npz"))
    again = evaluate_bidirectional(
        loaded.transform(test.text, "text"),
        loaded.transform(test.image, "image"),
        test.text_items,
        test.image_items,
        csls_k=10,
    )
    assert again == metrics


def test_unaligned_spaces_are_at_chance(slice_embeddings):
    """Without alignment, a random projection of text into image space retrieves nothing."""
    _, test = slice_embeddings
    rng = np.random.default_rng(0)
    text = test.text @ rng.normal(size=(384, 1280)).astype(np.float32)
    metrics = evaluate_bidirectional(text, test.image, test.text_items, test.image_items)
    assert metrics["t2i/R@10"] < 25


def test_second_run_is_served_from_the_cache(flickr8k, cache_dir, slice_embeddings):
    store = EmbeddingStore(cache_dir)
    again = embed_split(flickr8k.split("test").subset(100), store, "minilm", "efficientnet-lite0", progress=False)
    assert (store.hits, store.misses) == (100 + 500, 0)
    np.testing.assert_array_equal(again.image, slice_embeddings[1].image)
