"""The one fitting path shared by `xmodal fit`, the benchmarks and the analysis."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import CCAAligner
from xmodal.align.heads import HeadAligner
from xmodal.data import PairedDataset
from xmodal.model import Model, TrainingSet, fit_model, pair_training_set
from xmodal.store import EmbeddingStore, ModalityEmbeddings

ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}


@pytest.fixture(scope="module")
def small(flickr8k) -> PairedDataset:
    """30 train and 10 dev Flickr8k items."""
    return PairedDataset("flickr8k-small", flickr8k.split("train").items[:30] + flickr8k.split("dev").items[:10])


@pytest.mark.data
@pytest.mark.weights
def test_closed_form_needs_only_the_training_pairs(small, models_dir, tmp_path):
    store = EmbeddingStore(tmp_path)  # empty: every miss is an encode
    _, closed = pair_training_set(
        small, store, *ENCODERS.values(), iterative=False, models_dir=models_dir, progress=False
    )
    assert closed.embeddings["text"].shape == (150, 384) and closed.embeddings["image"].shape == (150, 1280)
    np.testing.assert_array_equal(closed.groups, np.repeat(np.arange(30), 5))
    assert closed.validation is None and closed.views == []
    misses = store.misses
    _, trained = pair_training_set(
        small, store, *ENCODERS.values(), iterative=True, image_views=["efficientnet-lite0-mirror"], models_dir=models_dir,
        progress=False,
    )  # fmt: skip
    assert trained.validation is not None and trained.validation["image"].shape == (10, 1280)  # one pair per dev item
    assert len(trained.views) == 1 and trained.views[0]["image"].shape == (150, 1280)
    assert not np.array_equal(trained.views[0]["image"], trained.embeddings["image"])
    assert store.misses == misses + 50 + 10 + 30  # dev captions, dev images, mirrored train images


@pytest.mark.data
@pytest.mark.weights
def test_fit_model_records_how_it_was_fitted(small, cache_dir, models_dir):
    store = EmbeddingStore(cache_dir)
    cca = fit_model(
        small, CCAAligner(n_components=8, reg=1.0), store, encoders=ENCODERS, models_dir=models_dir, progress=False
    )
    assert isinstance(cca, Model) and cca.encoder_names() == ENCODERS and cca.csls_k == 10
    warnings = cca.about.pop("warnings")
    assert cca.about == {"dataset": "flickr8k-small", "split": "train", "pairs": 150, "validation": "none"}
    assert len(warnings) == 1 and warnings[0].startswith("only 30 training items for 1280-dimensional embeddings")
    tuned = fit_model(
        small, CCAAligner(), store, encoders=ENCODERS, models_dir=models_dir, progress=False, auto=True, folds=3
    )
    assert tuned.about["auto"]["chosen"] == {
        k: getattr(tuned.aligner, k) for k in ("n_components", "reg", "weight_power")
    }
    assert tuned.about["auto"]["folds"] == 3 and len(tuned.about["auto"]["scores"]) > 1
    assert "chosen by cross-validation" in tuned.about["warnings"][0]
    head = fit_model(
        small, HeadAligner(dim=8, epochs=2), store, encoders=ENCODERS, models_dir=models_dir, progress=False
    )
    assert head.about["validation"] == "dev"
    no_dev = PairedDataset("flickr8k-train", small.items[:30])
    held = fit_model(
        no_dev, HeadAligner(dim=8, epochs=2), store, encoders=ENCODERS, models_dir=models_dir, progress=False
    )
    assert held.about["validation"] == "held out"
    with pytest.raises(ValueError, match=r"CCAAligner aligns 2 modalities, got 3 \(text, image, audio\)"):
        fit_model(small, CCAAligner(), store, encoders={**ENCODERS, "audio": "minilm"}, models_dir=models_dir)
    with pytest.raises(ValueError, match=r"unknown modality 'audio'"):
        fit_model(small, HeadAligner(), store, encoders={**ENCODERS, "audio": "minilm"}, models_dir=models_dir)


def test_an_n_modality_training_set_masks_absent_values():
    train = ModalityEmbeddings(
        arrays={"en": np.ones((3, 2)), "de": np.full((2, 2), 2.0), "image": np.full((2, 4), 3.0)},
        items={"en": np.array([0, 0, 1]), "de": np.array([0, 1]), "image": np.array([0, 1])},
        n_items=2,
    )
    training = TrainingSet.from_modalities(train, train)
    assert training.dims == {"en": 2, "de": 2, "image": 4}
    np.testing.assert_array_equal(training.groups, [0, 0, 1])
    assert training.present is not None and all(mask.all() for mask in training.present.values())
    assert training.validation is not None and training.validation["image"].shape == (2, 4)


def test_unpaired_training_rows_follow_the_pairs_with_the_other_modality_masked():
    pairs = {"text": np.ones((2, 3), np.float32), "image": 2 * np.ones((2, 4), np.float32)}
    values = {"text": (3 * np.ones((5, 3), np.float32), np.arange(5)), "image": (4 * np.ones((1, 4), np.float32), [7])}
    training = TrainingSet.with_unpaired(pairs, np.array([0, 1]), values)
    assert training.n_rows == 8 and training.n_pairs == 2
    assert training.present is not None and training.groups is not None
    assert training.present["text"].tolist() == [True] * 7 + [False]
    assert training.present["image"].tolist() == [True, True] + [False] * 5 + [True]
    assert training.embeddings["text"][:, 0].tolist() == [1, 1, 3, 3, 3, 3, 3, 0]
    assert training.embeddings["image"][:, 0].tolist() == [2, 2, 0, 0, 0, 0, 0, 4]
    assert training.groups.tolist() == [0, 1, 0, 1, 2, 3, 4, 7]
