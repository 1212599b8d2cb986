"""Calibrated scores: the probability that a search result is a true match, from its score.

A raw similarity (cosine, or CSLS) says which gallery item is closest, not whether it matches
at all. :class:`Calibrator` maps a score and its rank to ``P(match | score, rank)``, fitted on
held-out queries whose matches are known: the scores of each query's top ``k`` results
against a held-out gallery, labelled 1 where the result is relevant
(:mod:`xmodal.model.calibrate` collects them). That is the population the probabilities are
later read on (search results), so they answer "of the results at this rank that scored this
high, which share were matches?" for a gallery of about the held-out size.

- ``isotonic``: the monotone step function that minimises the squared error to the labels
  (pool-adjacent-violators), interpolated linearly between its knots;
- ``platt``: ``sigmoid(a * score + b)``, the logistic fit that minimises the log loss.

:func:`expected_calibration_error` measures the result on other held-out pairs.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from xmodal.core.estimator import Estimator

METHODS = ("isotonic", "platt")


class Calibrator(Estimator):
    """Score (and rank) -> probability of a true match (see the module docstring).

    ``method``: ``"isotonic"`` or ``"platt"``. ``rank_bins``: the first rank of each group of
    results calibrated apart (default 1, 2, 3-5, 6 and beyond): a query's first result is a
    match more often than a later one of the same score, so one curve for all ranks would be
    wrong exactly where a "no match" threshold reads it. ``(1,)`` calibrates all ranks alike.

    Fitted state: ``curves_``, one per rank group (isotonic: ``[scores, probabilities]``
    knots; platt: ``[a, b]``), ``n_`` (the results it saw) and ``base_rate_`` (their share of
    matches).
    """

    def __init__(self, method: str = "isotonic", rank_bins: tuple[int, ...] = (1, 2, 3, 6)):
        self.method = method
        self.rank_bins = rank_bins

    def fit(self, scores: np.ndarray, matches: np.ndarray, ranks: np.ndarray | None = None) -> Calibrator:
        """Fit on ``scores`` (n,), whether each is a true match (``matches``, n booleans) and
        its rank in its query's results (``ranks``, from 1; default: all 1). Every rank group
        needs results, and both classes must occur among them all. Returns self."""
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        bins = _check_bins(self.rank_bins)
        x, y = _check_outcomes(scores, matches)
        group = self._groups(ranks, len(x), bins)
        if y.all() or not y.any():
            raise ValueError("calibration needs both matches and non-matches among the held-out results")
        self._forget()
        curves = []
        for g, first in enumerate(bins):
            mask = group == g
            if not mask.any():
                raise ValueError(f"no held-out results of rank {first} or beyond to calibrate on; use fewer rank_bins")
            curves.append(_fit_curve(self.method, x[mask], y[mask]))
        self.curves_ = curves
        self.n_ = len(x)
        self.base_rate_ = float(y.mean())
        return self

    def predict(self, scores: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
        """``P(match | score, rank)`` of each score (float64, in [0, 1]); ``ranks`` from 1,
        default all 1. NaN scores are refused."""
        self._check_fitted()
        x = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError("scores to calibrate contain NaN or infinite values")
        group = self._groups(ranks, x.size, self.rank_bins).reshape(x.shape)
        out = np.empty(x.shape, dtype=np.float64)
        for g, curve in enumerate(self.curves_):
            mask = group == g
            out[mask] = _apply_curve(self.method, curve, x[mask])
        return out

    def to_json(self) -> dict[str, Any]:
        """Parameters and state as plain JSON (a model file keeps it in its header)."""
        self._check_fitted()
        return {
            "method": self.method,
            "rank_bins": list(self.rank_bins),
            "curves": [np.asarray(c).tolist() for c in self.curves_],
            "n": self.n_,
            "base_rate": self.base_rate_,
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> Calibrator:
        """The calibrator :meth:`to_json` described; a malformed state raises ``ValueError``."""
        try:
            calibrator = cls(str(state["method"]), _check_bins(tuple(int(b) for b in state["rank_bins"])))
            if calibrator.method not in METHODS:
                raise ValueError(f"unknown method {calibrator.method!r}")
            curves = [np.asarray(c, dtype=np.float64) for c in state["curves"]]
            ndim, shape = (2, "2 x m") if calibrator.method == "isotonic" else (1, "2")
            for curve in curves:
                if curve.ndim != ndim or curve.shape[0] != 2 or not curve.size or not np.isfinite(curve).all():
                    raise ValueError(f"a {calibrator.method} curve must be {shape} finite numbers")
            if len(curves) != len(calibrator.rank_bins):
                raise ValueError(f"{len(curves)} curves for {len(calibrator.rank_bins)} rank groups")
            calibrator.curves_ = curves
            calibrator.n_, calibrator.base_rate_ = int(state["n"]), float(state["base_rate"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid calibration: {error}") from None
        return calibrator

    @staticmethod
    def _groups(ranks: np.ndarray | None, n: int, bins: tuple[int, ...]) -> np.ndarray:
        """The rank group of each of ``n`` results."""
        if ranks is None:
            return np.zeros(n, dtype=np.int64)
        r = np.asarray(ranks).ravel()
        if r.shape != (n,) or not np.issubdtype(r.dtype, np.integer) or (r < 1).any():
            raise ValueError(f"ranks must be {n} integers >= 1, one per score")
        return np.searchsorted(np.asarray(bins), r, side="right") - 1


def expected_calibration_error(probabilities: np.ndarray, matches: np.ndarray, bins: int = 15) -> float:
    """``sum_b (n_b / n) |mean(matches in b) - mean(probabilities in b)|`` over ``bins``
    equal-width probability bins (Guo et al. 2017): 0 for perfectly calibrated probabilities."""
    p, y = _check_outcomes(probabilities, matches)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, y, minlength=bins) - np.bincount(which, p, minlength=bins))
    return float(gap.sum() / counts.sum())


def _check_outcomes(values: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(matches)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"scores and match labels must be two 1-d arrays of one length, got {x.shape} and {y.shape}")
    if not len(x):
        raise ValueError("no held-out results to calibrate on")
    if not np.isfinite(x).all():
        raise ValueError("scores contain NaN or infinite values")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("match labels must be booleans or 0/1")
    return x, y.astype(np.float64)


def _check_bins(bins: tuple[int, ...]) -> tuple[int, ...]:
    values = tuple(bins)
    ints = all(isinstance(b, int) and not isinstance(b, bool) for b in values)
    if not values or not ints or values[0] != 1 or any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"rank_bins must be increasing ranks starting at 1, got {bins!r}")
    return values


def _fit_curve(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Isotonic knots ``[scores, probabilities]`` or Platt's ``[a, b]`` of one rank group."""
    if method == "platt":
        if y.all() or not y.any():
            raise ValueError("Platt scaling needs matches and non-matches in every rank group; use isotonic")
        return _platt(x, y)
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return np.stack([fitted.X_thresholds_, fitted.y_thresholds_]).astype(np.float64)


def _apply_curve(method: str, curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return np.interp(x, curve[0], curve[1])
    return np.asarray(1.0 / (1.0 + np.exp(-(curve[0] * x + curve[1]))))


def _platt(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(a, b)`` minimising the log loss of ``sigmoid(a x + b)`` against ``y`` (L-BFGS)."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * x + theta[1]
        # log(1 + e^z) - y z, stably
        value = np.logaddexp(0.0, z) - y * z
        p = 1.0 / (1.0 + np.exp(-z))
        grad = np.array([np.dot(p - y, x), np.sum(p - y)]) / len(x)
        return float(value.mean()), grad

    result = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B")
    if not result.success or not np.isfinite(result.x).all():
        raise ValueError(f"Platt scaling did not converge: {result.message}")
    return np.asarray(result.x, dtype=np.float64)
