"""The self-training aligner: few pairs + unpaired rows, on a planted map and on real Flickr8k."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import Aligner, ProcrustesAligner
from xmodal.align.few_pair import SelfTrainingAligner, _draw, _mutual_pairs
from xmodal.core.arrays import unit_rows
from xmodal.evaluate import evaluate_bidirectional


def _planted(seed: int = 0, n: int = 900, pairs: int = 12):
    """Clustered 30-d texts; images = texts @ R (30 x 40, orthonormal rows) + noise. The first
    ``pairs`` items are pairs; the next ones are unpaired: their texts and their images as
    rows of their own, the images in another order; the last 200 items are the test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, 30)) * 3
    text = centres[rng.integers(0, 60, n)] + rng.normal(size=(n, 30)) * np.linspace(0.3, 1.2, 30)
    rotation = np.linalg.qr(rng.normal(size=(40, 30)))[0].T
    image = text @ rotation + 0.05 * rng.normal(size=(n, 40))
    lone = np.arange(pairs, n - 200)
    shuffled = rng.permutation(lone)
    fit = {
        "text": np.concatenate([text[:pairs], text[lone], np.zeros((len(lone), 30))]),
        "image": np.concatenate([image[:pairs], np.zeros((len(lone), 40)), image[shuffled]]),
    }
    ones, zeros = np.ones(len(lone), bool), np.zeros(len(lone), bool)
    present = {"text": np.r_[np.ones(pairs, bool), ones, zeros], "image": np.r_[np.ones(pairs, bool), zeros, ones]}
    test = {"text": text[n - 200 :], "image": image[n - 200 :]}
    return fit, present, test


def _r1(aligner: Aligner, test: dict[str, np.ndarray]) -> float:
    labels = np.arange(len(test["text"]))
    m = evaluate_bidirectional(
        aligner.transform(test["text"], "text"), aligner.transform(test["image"], "image"), labels, labels
    )
    return (m["t2i/R@1"] + m["i2t/R@1"]) / 2


def test_unpaired_rows_lift_a_dozen_pairs_to_the_planted_map():
    fit, present, test = _planted()
    paired = present["text"] & present["image"]
    alone = ProcrustesAligner("text", "image", n_components=12).fit({m: x[paired] for m, x in fit.items()})
    aligner = SelfTrainingAligner(n_components=30, pca_components=30).fit(fit, present=present)
    assert aligner.pairs_ == 12 and aligner.pseudo_pairs_ > 600  # of the 688 unpaired items
    assert _r1(aligner, test) >= 99 > 90 > _r1(alone, test)


def test_pseudo_pairs_are_mutual_nearest_neighbours():
    scores = np.array(  # 2 images x 4 texts
        [
            [0.9, 0.8, 0.1, 0.7],
            [0.2, 0.3, 0.5, 0.6],
        ]
    )
    texts, images = _mutual_pairs(scores)  # image 1 prefers text 3, which prefers image 0
    assert texts.tolist() == [0] and images.tolist() == [0]
    texts, images = _mutual_pairs(scores[:, :3])  # without text 3, image 1 and text 2 agree
    assert texts.tolist() == [0, 2] and images.tolist() == [0, 1]


def test_draw_picks_columns_with_the_plans_probabilities():
    plan = np.array([[0.0, 0.3, 0.1], [0.2, 0.0, 0.0]])
    picks = np.stack([_draw(plan, np.random.default_rng(seed)) for seed in range(4000)])
    assert set(picks[:, 1]) == {0}  # a row with one non-zero entry
    assert set(picks[:, 0]) == {1, 2} and np.mean(picks[:, 0] == 1) == pytest.approx(0.75, abs=0.03)


def test_contrastive_epochs_move_the_maps_and_keep_the_planted_map():
    """Step 5 changes the CCA's projections (and only them) and the map still holds."""
    fit, present, test = _planted(seed=2)
    settings = {"n_components": 30, "pca_components": 30, "seed": 1}
    closed = SelfTrainingAligner(head_epochs=0, **settings).fit(fit, present=present)
    trained = SelfTrainingAligner(head_epochs=3, replan=2, **settings).fit(fit, present=present)
    for m in ("text", "image"):
        assert np.array_equal(closed.mean_[m], trained.mean_[m])
        assert not np.allclose(closed.projection_[m], trained.projection_[m])
        assert trained.projection_[m].dtype == closed.projection_[m].dtype
    assert _r1(trained, test) >= 99


def test_contrastive_epochs_keep_the_labelled_pairs_when_the_pools_are_samples():
    """With pools sampled down (``pool``) and the labelled pairs weighing most, step 5 must
    train on the true pairs: pairing a text with another pair's image would wreck the map."""
    fit, present, test = _planted(seed=2, pairs=60)
    settings = {"n_components": 30, "pca_components": 30, "pool": 100, "pair_weight": 200, "seed": 1}
    aligner = SelfTrainingAligner(head_epochs=20, head_lr=1e-2, **settings).fit(fit, present=present)
    assert _r1(aligner, test) >= 99


def test_fitting_is_deterministic_and_saves_without_pickle(tmp_path):
    fit, present, test = _planted(seed=1)
    aligner = SelfTrainingAligner(n_components=20, pca_components=30, pool=400, seed=3).fit(fit, present=present)
    again = SelfTrainingAligner(n_components=20, pca_components=30, pool=400, seed=3).fit(fit, present=present)
    assert np.array_equal(aligner.transform(test["text"], "text"), again.transform(test["text"], "text"))
    loaded = Aligner.load(aligner.save(tmp_path / "selftrain.npz"))
    for m in ("text", "image"):
        assert np.array_equal(loaded.transform(test[m], m), aligner.transform(test[m], m))
    assert loaded.get_params() == aligner.get_params()


def test_bad_settings_are_refused_clearly():
    fit, present, _ = _planted()
    two = {m: p.copy() for m, p in present.items()}
    two["image"][2:12] = False
    with pytest.raises(ValueError, match="at least 3 pairs"):
        SelfTrainingAligner().fit(fit, present=two)
    with pytest.raises(ValueError, match="both prior_image and prior_text"):
        SelfTrainingAligner(prior_image="efficientnet-lite0").fit(fit, present=present)
    with pytest.raises(ValueError, match="prior_modality 'photo'"):
        SelfTrainingAligner(prior_image="efficientnet-lite0", prior_text="minilm", prior_modality="photo").fit(
            fit, present=present
        )
    with pytest.raises(ValueError, match="prior_space must be one of"):
        SelfTrainingAligner(prior_space="pixels").fit(fit, present=present)
    with pytest.raises(ValueError, match="image_temperature and text_temperature must be positive, got 0.5 and 0"):
        SelfTrainingAligner(text_temperature=0).fit(fit, present=present)
    with pytest.raises(ValueError, match="head_epochs must be an integer of at least 0, replan at least 1"):
        SelfTrainingAligner(replan=0).fit(fit, present=present)
    with pytest.raises(ValueError, match=r"head_temperature in \(0, 1\], got 0.001 and 2"):
        SelfTrainingAligner(head_temperature=2).fit(fit, present=present)
    with pytest.raises(ValueError, match="imagenet_prior takes the model's encoders"):
        SelfTrainingAligner(imagenet_prior=True).fit(fit, present=present)


def test_the_prior_reads_the_models_encoders():
    aligner = SelfTrainingAligner(imagenet_prior=True)
    aligner.use_encoders({"caption": "minilm", "image": "efficientnet-lite1"})
    assert (aligner.prior_image, aligner.prior_text) == ("efficientnet-lite1", "minilm")
    with pytest.raises(ValueError, match="prior_image is 'efficientnet-lite1' but the model's encoder is 'x'"):
        aligner.use_encoders({"caption": "minilm", "image": "x"})
    with pytest.raises(ValueError, match="the model has text, photo"):
        SelfTrainingAligner(imagenet_prior=True).use_encoders({"text": "minilm", "photo": "efficientnet-lite0"})
    plain = SelfTrainingAligner()
    plain.use_encoders({"text": "minilm", "image": "efficientnet-lite0"})
    assert plain.prior_image is None


@pytest.mark.data
@pytest.mark.weights
def test_the_classifier_prior_lifts_thirty_real_pairs(flickr8k, cache_dir):
    """30 Flickr8k pairs + the other 170 images and 850 captions of 200 train items, unpaired;
    scored on 100 test items: the prior and the pool beat Procrustes on the pairs alone."""
    from xmodal.store import EmbeddingStore, embed_split

    store = EmbeddingStore(cache_dir)
    train = embed_split(flickr8k.split("train").subset(200), store, "minilm", "efficientnet-lite0", progress=False)
    test = embed_split(flickr8k.split("test").subset(100), store, "minilm", "efficientnet-lite0", progress=False)
    first_caption = np.array([np.flatnonzero(train.text_items == i)[0] for i in range(30)])
    unpaired_captions = np.flatnonzero(train.text_items >= 30)
    image_row = {int(item): row for row, item in enumerate(train.image_items)}
    pair_images = train.image[[image_row[i] for i in range(30)]]
    lone_images = train.image[[image_row[i] for i in range(30, 200)]]
    n_caps, n_imgs = len(unpaired_captions), len(lone_images)
    fit = {
        "text": np.concatenate(
            [train.text[first_caption], np.zeros((n_imgs, 384), np.float32), train.text[unpaired_captions]]
        ),
        "image": np.concatenate([pair_images, lone_images, np.zeros((n_caps, 1280), np.float32)]),
    }
    present = {
        "text": np.r_[np.ones(30, bool), np.zeros(n_imgs, bool), np.ones(n_caps, bool)],
        "image": np.r_[np.ones(30 + n_imgs, bool), np.zeros(n_caps, bool)],
    }
    alone = ProcrustesAligner("text", "image").fit({m: x[:30] for m, x in fit.items()})
    prior = SelfTrainingAligner(
        n_components=32, pca_components=32, prior_image="efficientnet-lite0", prior_text="minilm"
    )
    prior.fit(fit, present=present)
    assert prior.pairs_ == 30 and n_caps == 850 and n_imgs == 170
    labels_t, labels_i = test.text_items, test.image_items
    scores = {}
    for name, aligner in (("alone", alone), ("prior", prior)):
        m = evaluate_bidirectional(
            aligner.transform(test.text, "text"), aligner.transform(test.image, "image"), labels_t, labels_i, csls_k=10
        )
        scores[name] = (m["t2i/R@10"] + m["i2t/R@10"]) / 2
    assert scores["prior"] >= scores["alone"] + 10, scores
    block = prior.prior_block(unit_rows(test.image), "image")  # class distributions, centred
    assert block.shape == (100, 1000) and np.allclose(np.linalg.norm(block, axis=1), 1, atol=1e-5)
