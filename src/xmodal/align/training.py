"""Training-loop pieces shared by the trained heads and LiT tuning: batches of one row per
group (e.g. one caption per image, so captions of one image are never each other's
negatives) and early stopping on a validation loss."""

from __future__ import annotations

import math

import numpy as np


def rows_by_group(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Row indices of each group (each row its own group when ``groups`` is None)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one entry per row ({n}), got shape {groups.shape}")
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    return np.split(order, bounds)


def epoch_rows(group_rows: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One random row of every group, in random order."""
    picks = np.array([rows[rng.integers(len(rows))] for rows in group_rows])
    return picks[rng.permutation(len(picks))]


class EarlyStopping:
    """Tracks a validation loss: ``step(loss)`` is True when it improved by more than
    ``min_delta`` (keep those weights); ``stop`` turns True after ``patience`` epochs without."""

    def __init__(self, patience: int, min_delta: float = 1e-4, best: float = math.inf):
        self.patience = patience
        self.min_delta = min_delta
        self.best = best
        self.since_best = 0

    def step(self, loss: float) -> bool:
        if loss < self.best - self.min_delta:
            self.best, self.since_best = loss, 0
            return True
        self.since_best += 1
        return False

    @property
    def stop(self) -> bool:
        return self.since_best >= self.patience
