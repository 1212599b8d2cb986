"""The one training loop: batches of one row per group, early stopping on the monitored loss,
the best weights kept, held-out groups, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.align.training import (
    LOGIT_SCALE_MAX,
    EarlyStopping,
    epoch_rows,
    holdout,
    logit_scale_parameter,
    rows_by_group,
    seeded,
    train,
)


def test_rows_by_group_and_epoch_rows_take_one_row_per_group():
    groups = np.array([2, 0, 2, 1, 0, 2])
    assert [r.tolist() for r in rows_by_group(groups, 6)] == [[1, 4], [3], [0, 2, 5]]
    picks = epoch_rows(rows_by_group(groups, 6), np.random.default_rng(0))
    assert sorted(groups[picks].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"groups must have one entry per row \(5\)"):
        rows_by_group(groups, 5)


def test_holdout_is_seeded_and_keeps_groups_whole():
    group_rows = rows_by_group(np.repeat(np.arange(30), 3), 90)
    kept, held = holdout(group_rows, 0.1, seed=4)
    _, held_again = holdout(group_rows, 0.1, seed=4)
    np.testing.assert_array_equal(held, held_again)
    assert len(held) == 3 and len(kept) == 27
    assert all(row % 3 == 0 for row in held)  # the first row of each held-out group
    assert not set(np.concatenate(kept) // 3) & set(held // 3)  # no group on both sides
    assert not np.array_equal(held, holdout(group_rows, 0.1, seed=5)[1])
    assert holdout(group_rows[:3], 0.5, seed=0) is None and holdout(group_rows, 0.0, seed=0) is None
    assert len(holdout(group_rows[:5], 0.01, seed=0)[1]) == 2  # at least 2 held out
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        holdout(group_rows, 1.0, seed=0)


def test_early_stopping_counts_epochs_without_improvement():
    stopping = EarlyStopping(patience=2, min_delta=0.1)
    assert stopping.step(1.0) and not stopping.step(0.95) and not stopping.stop
    assert not stopping.step(2.0) and stopping.stop


class _Line(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def test_train_keeps_the_best_monitored_weights_and_stops_early():
    """Steps move ``w`` up by 1 each epoch; the monitor is lowest at ``w = 3``: training stops
    ``patience`` epochs later and restores the weights of ``w = 3``."""
    module = _Line()
    optimiser = torch.optim.SGD(module.parameters(), lr=1.0)
    history = train(
        module, optimiser, lambda rows: -module.w.sum() * len(rows) / 4, lambda _: float((module.w.item() - 3) ** 2),
        rows_by_group(None, 4), np.random.default_rng(0), epochs=20, batch_size=4, patience=2,
    )  # fmt: skip
    assert history.losses == [4.0, 1.0, 0.0, 1.0, 4.0] and history.best == 2
    assert module.w.item() == 3.0 and not module.training


def test_train_monitors_first_and_clamps_the_temperature():
    module = _Line()
    scale = logit_scale_parameter(0.05)
    assert scale.item() == pytest.approx(math.log(20))
    optimiser = torch.optim.SGD([*module.parameters(), scale], lr=100.0)
    history = train(
        module, optimiser, lambda rows: -(module.w.sum() + scale), lambda _: 5.0 if module.w.item() == 0 else 9.0,
        rows_by_group(None, 3), np.random.default_rng(0), epochs=3, batch_size=3, patience=1, logit_scale=scale,
        monitor_first=True,
    )  # fmt: skip
    assert history.losses == [5.0, 9.0] and history.best == 0  # no epoch beat the untrained module
    assert module.w.item() == 0.0 and scale.item() == pytest.approx(LOGIT_SCALE_MAX)


def test_train_without_a_monitor_runs_every_epoch_and_keeps_the_last_weights():
    module = _Line()
    optimiser = torch.optim.SGD(module.parameters(), lr=1.0)
    history = train(
        module, optimiser, lambda rows: -module.w.sum() * len(rows) / 4, None, rows_by_group(None, 4),
        np.random.default_rng(0), epochs=5, batch_size=4, patience=1,
    )  # fmt: skip
    assert len(history.losses) == 5 and all(math.isnan(x) for x in history.losses) and history.best == 4
    assert module.w.item() == 5.0
    with pytest.raises(ValueError, match="monitor_first needs a monitor"):
        train(
            module, optimiser, lambda rows: module.w.sum(), None, rows_by_group(None, 4), np.random.default_rng(0),
            epochs=1, batch_size=4, patience=1, monitor_first=True,
        )  # fmt: skip


def test_seeded_fixes_torch_and_numpy():
    first = (seeded(3).integers(1000, size=3), torch.rand(2))
    second = (seeded(3).integers(1000, size=3), torch.rand(2))
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
