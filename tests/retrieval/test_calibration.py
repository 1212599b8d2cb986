"""Calibration of scores into match probabilities: known-answer curves, rank groups, ECE, JSON."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.retrieval.calibration import Calibrator, expected_calibration_error


def _planted(n: int, seed: int, ranks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores with a known P(match | score) = sigmoid(12 s - 4 + rank shift), and labels drawn from it."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-0.2, 0.8, n)
    shift = 0.0 if ranks is None else np.where(ranks == 1, 1.5, -1.0)
    truth = 1 / (1 + np.exp(-(12 * scores - 4 + shift)))
    return scores, rng.random(n) < truth, truth


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_planted_curve_is_recovered_and_calibrated_on_fresh_draws(method):
    scores, matches, _ = _planted(20_000, 0)
    calibrator = Calibrator(method, rank_bins=(1,)).fit(scores, matches)
    fresh, fresh_matches, truth = _planted(20_000, 1)
    predicted = calibrator.predict(fresh)
    assert np.abs(predicted - truth).mean() < 0.02
    assert expected_calibration_error(predicted, fresh_matches) < 0.02
    assert np.all(np.diff(calibrator.predict(np.linspace(-0.2, 0.8, 50))) >= 0)  # monotone
    if method == "platt":
        assert calibrator.curves_[0] == pytest.approx([12, -4], abs=0.6)


def test_rank_groups_tell_a_first_result_from_a_later_one_of_the_same_score():
    ranks = np.tile(np.arange(1, 11), 3000)
    scores, matches, _ = _planted(len(ranks), 2, ranks)
    grouped = Calibrator("platt").fit(scores, matches, ranks)
    first, later = grouped.predict(np.full(2, 0.3), np.array([1, 7]))
    assert first == pytest.approx(1 / (1 + np.exp(-(3.6 - 4 + 1.5))), abs=0.05)
    assert later == pytest.approx(1 / (1 + np.exp(-(3.6 - 4 - 1.0))), abs=0.05)
    one_curve = Calibrator("platt", rank_bins=(1,)).fit(scores, matches, ranks)
    fresh, fresh_matches, _ = _planted(len(ranks), 3, ranks)
    first_only = ranks == 1
    ece_grouped = expected_calibration_error(
        grouped.predict(fresh[first_only], ranks[first_only]), fresh_matches[first_only]
    )
    ece_one = expected_calibration_error(
        one_curve.predict(fresh[first_only], ranks[first_only]), fresh_matches[first_only]
    )
    assert ece_grouped < 0.03 < ece_one


def test_expected_calibration_error_known_answers():
    assert expected_calibration_error(np.full(4, 0.5), np.array([1, 0, 1, 0])) == 0.0
    assert expected_calibration_error(np.ones(3), np.zeros(3, bool)) == 1.0
    assert expected_calibration_error(np.array([0.95, 0.05]), np.array([True, False])) == pytest.approx(0.05)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_json_round_trip_predicts_the_same(method):
    ranks = np.tile(np.arange(1, 11), 500)
    scores, matches, _ = _planted(len(ranks), 4, ranks)
    calibrator = Calibrator(method).fit(scores, matches, ranks)
    again = Calibrator.from_json(calibrator.to_json())
    probe, probe_ranks = np.linspace(-0.5, 1, 40), np.arange(40) % 12 + 1
    assert np.array_equal(again.predict(probe, probe_ranks), calibrator.predict(probe, probe_ranks))
    assert again.n_ == len(scores) and again.base_rate_ == pytest.approx(matches.mean())


@pytest.mark.parametrize(
    "state, message",
    [
        ({"method": "isotonic"}, "invalid calibration"),
        ({"method": "magic", "rank_bins": [1], "curves": [[0, 1]], "n": 1, "base_rate": 0.5}, "unknown method"),
        ({"method": "platt", "rank_bins": [1, 2], "curves": [[1, 0]], "n": 1, "base_rate": 0.5}, "1 curves for 2"),
        ({"method": "platt", "rank_bins": [1], "curves": [[1, "x"]], "n": 1, "base_rate": 0.5}, "invalid calibration"),
        ({"method": "isotonic", "rank_bins": [2], "curves": [[[0], [1]]], "n": 1, "base_rate": 0.5}, "rank_bins"),
        ({"method": "isotonic", "rank_bins": [1], "curves": [[[0, 1]]], "n": 1, "base_rate": 0.5}, "2 x m"),
    ],
)
def test_a_malformed_calibration_is_refused(state, message):
    with pytest.raises(ValueError, match=message):
        Calibrator.from_json(state)


def test_bad_input_is_refused_clearly():
    scores, matches, _ = _planted(200, 5)
    with pytest.raises(ValueError, match="both matches and non-matches"):
        Calibrator().fit(scores, np.zeros(200, bool))
    with pytest.raises(ValueError, match="NaN"):
        Calibrator().fit(np.full(200, np.nan), matches)
    with pytest.raises(ValueError, match="one length"):
        Calibrator().fit(scores, matches[:10])
    with pytest.raises(ValueError, match="0/1"):
        Calibrator().fit(scores, np.full(200, 2))
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator("softmax").fit(scores, matches)
    with pytest.raises(ValueError, match="rank_bins"):
        Calibrator(rank_bins=(1, 1)).fit(scores, matches)
    with pytest.raises(ValueError, match="rank 3 or beyond"):
        Calibrator(rank_bins=(1, 3)).fit(scores, matches, np.ones(200, int))
    with pytest.raises(ValueError, match="integers >= 1"):
        Calibrator().fit(scores, matches, np.zeros(200, int))
    fitted = Calibrator(rank_bins=(1,)).fit(scores, matches)
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.array([0.1, np.nan]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Calibrator().predict(scores)
