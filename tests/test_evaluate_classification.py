"""Known answers for the classification metrics: accuracy, ties, baselines, confusion."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.evaluate import classification_report


def test_known_answer():
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # class 0, right
            [0.2, 0.7, 0.1],  # class 0, second: taken for 1
            [0.1, 0.2, 0.3],  # class 0, third: taken for 2
            [0.0, 0.5, 0.4],  # class 2, second: taken for 1
        ]
    )
    report = classification_report(scores, np.array([0, 0, 0, 2]), ks=(1, 2))
    assert report.metrics == pytest.approx(
        {
            "top1": 25.0,
            "top2": 75.0,
            "balanced top1": 100 * (1 / 3 + 0) / 2,  # class 1 has no query
            "majority top1": 75.0,
            "chance top1": 100 / 3,
            "majority top2": 100.0,
            "chance top2": 200 / 3,
        }
    )
    np.testing.assert_array_equal(report.confusion, [[1, 1, 1], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(report.support, [3, 0, 1])
    np.testing.assert_allclose(report.class_top1, [100 / 3, np.nan, 0.0])


def test_ties_count_against_the_true_class():
    report = classification_report(np.zeros((4, 4)), np.array([0, 1, 2, 3]), ks=(1, 3, 4))
    assert report.metrics["top1"] == 0 and report.metrics["top3"] == 0 and report.metrics["top4"] == 100
    assert np.trace(report.confusion) == 0 and report.confusion.sum() == 4


def test_k_beyond_the_classes_finds_every_class():
    report = classification_report(np.random.default_rng(0).random((6, 3)), np.array([0, 1, 2, 0, 1, 2]), ks=(5,))
    assert report.metrics["top5"] == 100 and report.metrics["chance top5"] == 100
    assert report.metrics["majority top5"] == 100


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (np.zeros(3), np.zeros(3, int), "scores must be a 2-D array"),
        (np.zeros((3, 2)), np.zeros(2, int), "targets has 2 entries but there are 3 queries"),
        (np.zeros((3, 2)), np.zeros(3), "targets must be a 1-D integer array"),
        (np.zeros((3, 2)), np.array([0, 1, 2]), r"class indices in 0..1, got 0..2"),
        (np.array([[0.0, np.nan]]), np.zeros(1, int), "scores contain NaN or inf"),
    ],
)
def test_bad_inputs(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        classification_report(scores, targets)


def test_bad_k():
    with pytest.raises(ValueError, match="ks must be >= 1"):
        classification_report(np.zeros((2, 2)), np.zeros(2, int), ks=(0,))
