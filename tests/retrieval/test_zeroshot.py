"""Zero-shot classification on planted data: class prompts and queries in two spaces related
by a rotation that an aligner learns from paired rows, then classes recovered in the shared space."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import ProcrustesAligner
from xmodal.evaluate import classification_report
from xmodal.retrieval import class_prototypes, pairwise, zero_shot_scores

N_CLASSES, D_TEXT, D_IMAGE, N_QUERIES = 8, 32, 48, 400


def test_prototypes_are_means_of_unit_rows():
    prompts = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, -5.0], [1.0, 1.0]])
    prototypes = class_prototypes(prompts, np.array([0, 0, 1, 0]))
    np.testing.assert_allclose(prototypes, [[(1 + 0 + 2**-0.5) / 3, (0 + 1 + 2**-0.5) / 3], [0.0, -1.0]], rtol=1e-6)
    assert prototypes.dtype == np.float32


@pytest.mark.parametrize(
    ("classes", "message"),
    [(np.array([0, 2]), "class 1 has no prompt"), (np.array([0]), "one class index >= 0 per prompt")],
)
def test_prototype_errors(classes, message):
    with pytest.raises(ValueError, match=message):
        class_prototypes(np.eye(2), classes)


def test_scores_are_the_similarities_to_the_prototypes():
    rng = np.random.default_rng(0)
    queries, prompts, classes = rng.normal(size=(5, 4)), rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    expected = pairwise(queries, class_prototypes(prompts, classes), "dot")
    np.testing.assert_allclose(zero_shot_scores(queries, prompts, classes, metric="dot"), expected, rtol=1e-5)
    assert zero_shot_scores(queries, prompts, classes, csls_k=2).shape == (5, 3)


def planted(seed: int = 0, noise: float = 0.3):
    """Class centres in a text space; prompts: 3 noisy names per class; queries: noisy copies of
    their class's centre, rotated into an image space; paired rows to learn the rotation."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLASSES, D_TEXT))
    rotation = np.linalg.qr(rng.normal(size=(D_IMAGE, D_TEXT)))[0].T  # D_TEXT x D_IMAGE, orthonormal rows
    classes = np.repeat(np.arange(N_CLASSES), 3)
    prompts = centres[classes] + noise * rng.normal(size=(len(classes), D_TEXT))
    targets = rng.integers(N_CLASSES, size=N_QUERIES)
    queries = (centres[targets] + noise * rng.normal(size=(N_QUERIES, D_TEXT))) @ rotation
    paired = rng.normal(size=(300, D_TEXT))
    aligner = ProcrustesAligner("text", "image").fit({"text": paired, "image": paired @ rotation})
    return aligner, prompts, classes, queries, targets


def test_planted_classes_are_recovered_through_the_learnt_rotation():
    aligner, prompts, classes, queries, targets = planted()
    scores = zero_shot_scores(aligner.transform(queries, "image"), aligner.transform(prompts, "text"), classes)
    report = classification_report(scores, targets)
    assert report.metrics["top1"] > 97 and report.metrics["balanced top1"] > 97
    assert report.metrics["majority top1"] < 20 and report.metrics["chance top1"] == 100 / N_CLASSES


def test_queries_that_carry_no_class_are_at_chance():
    aligner, prompts, classes, _, targets = planted()
    noise = np.random.default_rng(1).normal(size=(N_QUERIES, D_IMAGE))  # nothing of the classes left
    scores = zero_shot_scores(aligner.transform(noise, "image"), aligner.transform(prompts, "text"), classes)
    top1 = classification_report(scores, targets).metrics["top1"]
    assert abs(top1 - 100 / N_CLASSES) < 5  # 3 standard deviations of 400 guesses at 1 in 8
