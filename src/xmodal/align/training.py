"""The one training loop, shared by the trained heads, the learned similarities and LiT tuning.

:func:`train` runs epochs of AdamW steps over batches that hold one row per group (e.g. one
caption per image, so captions of one image are never each other's negatives), clamps a
learnable temperature after each step, measures a monitored (validation) loss after each
epoch, and stops early: the weights of the epoch with the lowest monitored loss are kept.
Seeding is :func:`seeded`; a validation set carved from the training groups is
:func:`holdout`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

LOGIT_SCALE_MAX = math.log(100.0)  # the inverse temperature stays in [1, 100] (CLIP's bound)


def seeded(seed: int) -> np.random.Generator:
    """Seed torch's global generator (weight init, dropout) and return a numpy generator
    (batches, negatives, views) seeded alike: one seed fixes a training run."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def logit_scale_parameter(temperature: float) -> nn.Parameter:
    """A learnable log inverse temperature, starting at ``log(1 / temperature)``."""
    if not 0 < temperature <= 1:
        raise ValueError(f"temperature must be in (0, 1], got {temperature}")
    return nn.Parameter(torch.tensor(math.log(1.0 / temperature)))


def rows_by_group(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Row indices of each group, ascending (each row its own group when ``groups`` is None)."""
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


def holdout(group_rows: list[np.ndarray], fraction: float, seed: int) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Carve a validation set from the training groups: ``(training groups, validation rows)``.

    ``round(fraction * groups)`` groups (at least 2, and 2 left to train on), drawn with
    ``seed``, are held out; the validation rows are the first row of each (one row per
    group, like a dev split's first captions). None when ``fraction`` is 0 or there are
    fewer than 4 groups.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    n = len(group_rows)
    if fraction == 0 or n < 4:
        return None
    n_validation = min(n - 2, max(2, round(fraction * n)))
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:n_validation]] = True
    kept = [rows for rows, h in zip(group_rows, held) if not h]
    return kept, np.array([rows[0] for rows, h in zip(group_rows, held) if h])


class EarlyStopping:
    """Tracks a monitored loss: ``step(loss)`` is True when it improved by more than
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


@dataclass(frozen=True)
class History:
    """Monitored loss after each epoch (after none first, when monitored before training) and
    the position in ``losses`` of the kept weights (-1: the initial weights, never monitored)."""

    losses: list[float]
    best: int


def train(
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    monitor: Callable[[np.ndarray | None], torch.Tensor | float] | None,
    group_rows: list[np.ndarray],
    rng: np.random.Generator,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    logit_scale: nn.Parameter | None = None,
    monitor_first: bool = False,
    keep: Callable[[str], bool] | None = None,
    desc: str = "training",
    progress: bool = False,
) -> History:
    """Train ``module`` in place; on return it holds the kept weights, in eval mode.

    Each epoch draws :func:`epoch_rows` and steps ``optimiser`` on ``batch_loss(batch rows)``
    for consecutive batches of ``batch_size`` rows (a last batch of one row is skipped), then
    ``logit_scale`` (if any) is clamped to ``[0, LOGIT_SCALE_MAX]``. After the epoch
    ``monitor(epoch rows)`` is measured in eval mode without gradients; the weights with the
    lowest value so far are kept (:class:`EarlyStopping`, ``patience`` epochs). With
    ``monitor_first`` the untrained module is measured first (``monitor(None)``) and kept
    unless an epoch beats it. Without a ``monitor`` every epoch runs and the last weights are
    kept (the losses are NaN). ``keep`` selects the ``state_dict`` entries to snapshot
    (default: all), e.g. only the tuned layers of a large model.
    """
    if monitor is None and monitor_first:
        raise ValueError("monitor_first needs a monitor")
    stopping = EarlyStopping(patience)
    losses: list[float] = []

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items() if keep is None or keep(k)}

    def measure(rows: np.ndarray | None) -> float:
        if monitor is None:
            return math.nan
        module.eval()
        with torch.no_grad():
            return float(monitor(rows))

    if monitor_first:
        losses.append(measure(None))
        stopping.best = losses[0]
    best, best_epoch = snapshot(), len(losses) - 1
    for _ in range(epochs):
        module.train()
        rows = epoch_rows(group_rows, rng)
        bar = tqdm(
            range(0, len(rows), batch_size),
            desc=f"{desc} epoch {len(losses) + 1 - monitor_first}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for start in bar:
            batch = rows[start : start + batch_size]
            if len(batch) < 2:
                continue
            loss = batch_loss(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if logit_scale is not None:
                with torch.no_grad():
                    logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)
            if progress:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(measure(rows))
        if monitor is None or stopping.step(losses[-1]):
            best, best_epoch = snapshot(), len(losses) - 1
        elif stopping.stop:
            break
    module.load_state_dict(best, strict=keep is None)
    module.eval()
    return History(losses, best_epoch)
