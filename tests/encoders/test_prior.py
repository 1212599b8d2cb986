import numpy as np
import pytest

from xmodal.encoders.prior import ClassifierPrior, class_distribution


def test_class_distributions_are_square_rooted_softmaxes():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    p = class_distribution(logits, 1.0)
    np.testing.assert_allclose(p[0], 0.5)  # uniform over 4 classes: sqrt(1/4)
    np.testing.assert_allclose(p[1] ** 2, np.exp([2, 0, 0, 0]) / (np.exp(2) + 3), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1, rtol=1e-6)
    # the dot product of two rows is their Bhattacharyya coefficient; a colder temperature sharpens
    assert class_distribution(logits, 0.1)[1, 0] > p[1, 0]
    np.testing.assert_allclose(p[0] @ p[1], np.sqrt(p[1] ** 2 / 4).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        class_distribution(logits, 0.0)


def test_the_prior_names_the_modality_whose_width_is_wrong():
    rng = np.random.default_rng(0)
    prior = ClassifierPrior(rng.normal(size=(5, 4)), np.zeros(5), rng.normal(size=(5, 3)))
    assert prior.image_classes(rng.normal(size=(2, 4))).shape == (2, 5)
    assert prior.text_classes(rng.normal(size=(2, 3))).shape == (2, 5)
    with pytest.raises(ValueError, match=r"image embeddings must be \(n, 4\), got \(2, 3\)"):
        prior.image_classes(rng.normal(size=(2, 3)))
    with pytest.raises(ValueError, match=r"text embeddings must be \(n, 3\), got \(2, 4\)"):
        prior.text_classes(rng.normal(size=(2, 4)))
