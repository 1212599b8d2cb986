"""Additive sufficient statistics of row-paired embeddings: what closed-form aligners fit from.

Least squares, Procrustes and CCA see the data only through the row count ``n``, each
modality's column sums ``s_m = X_m^T 1`` and the product blocks ``P_ab = X_a^T X_b``. These add
up: the statistics of two sets of rows are the sums of theirs, so shards (or machines, or new
pairs arriving later) are accumulated by addition and a fit over any number of rows needs
``O(d^2)`` memory. Products of float32 rows are taken in float32 and accumulated in float64
(as :func:`~xmodal.align.linalg.cross_product` does).
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.align import linalg
from xmodal.core.arrays import check_embeddings
from xmodal.core.files import atomic_path
from xmodal.store.engine import Engine, LocalEngine
from xmodal.store.shards import Shards

FORMAT = "xmodal-statistics/1"


@dataclass(frozen=True)
class Statistics:
    """``count`` rows; ``sums[m]`` (``d_m``, float64); ``products[(a, b)]`` (``d_a x d_b``,
    float64) for every pair ``a`` before or equal to ``b`` in ``modalities`` order."""

    modalities: tuple[str, ...]
    count: int
    sums: Mapping[str, np.ndarray]
    products: Mapping[tuple[str, str], np.ndarray]

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray]) -> Statistics:
        """The statistics of row-paired arrays ``{modality: (n, d_m)}``."""
        checked = {m: check_embeddings(x, f"{m} embeddings") for m, x in data.items()}
        rows = {m: len(x) for m, x in checked.items()}
        if len(checked) < 2 or len(set(rows.values())) != 1:
            raise ValueError(f"statistics need two or more row-paired modalities, got rows {rows}")
        names = tuple(checked)
        return cls(
            names,
            next(iter(rows.values())),
            {m: x.sum(axis=0, dtype=np.float64) for m, x in checked.items()},
            {(a, b): linalg.cross_product(checked[a], checked[b]) for a, b in _blocks(names)},
        )

    @classmethod
    def from_plan(cls, data: Mapping[str, np.ndarray], plan: np.ndarray, count: int) -> Statistics:
        """The expected statistics of ``count`` pairs drawn from a plan: row ``i`` of the first of
        two modalities (``n x d_1``) with row ``j`` of the second (``m x d_2``) with probability
        ``plan[i, j]`` (``n x m``, non-negative, summing to 1; e.g. :func:`linalg.sinkhorn`).

        ``P_12 = count * X_1^T plan X_2``; ``P_11 = count * X_1^T diag(plan 1) X_1`` (likewise the
        second); ``s_1 = count * X_1^T plan 1``. A plan with one 1/n per row is ``n`` hard pairs.
        """
        checked = {m: check_embeddings(x, f"{m} embeddings") for m, x in data.items()}
        if len(checked) != 2:
            raise ValueError(f"a plan pairs two modalities, got {list(checked)}")
        (a, x), (b, y) = checked.items()
        if plan.shape != (len(x), len(y)) or not np.isfinite(plan).all() or (plan < 0).any():
            raise ValueError(
                f"the plan must be a finite non-negative {len(x)} x {len(y)} matrix, got shape {plan.shape}"
            )
        total = float(plan.sum(dtype=np.float64))
        if not abs(total - 1) < 1e-3:
            raise ValueError(f"the plan must sum to 1, it sums to {total:.6g}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        rows, columns = plan.sum(1, dtype=np.float64), plan.sum(0, dtype=np.float64)
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        return cls(
            (a, b),
            count,
            {a: count * (rows @ x64), b: count * (columns @ y64)},
            {
                (a, a): count * (x64 * rows[:, None]).T @ x64,
                (a, b): count * x64.T @ (plan @ y).astype(np.float64),
                (b, b): count * (y64 * columns[:, None]).T @ y64,
            },
        )

    @classmethod
    def from_shards(
        cls,
        shards: Mapping[str, Shards],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        engine: Engine | None = None,
        block_rows: int = linalg.PRODUCT_BLOCK_ROWS,
    ) -> Statistics:
        """The statistics of out-of-core rows, one block of ``block_rows`` in memory at a time.

        ``rows[m]`` pairs the rows: training row ``i`` is row ``rows[m][i]`` of ``shards[m]``
        (e.g. every caption with its image); without ``rows``, the shard folders are row-paired
        and of one length. ``preprocess`` (an aligner's row preprocessing) is applied to each
        block first. Each block is a task of ``engine`` (default: this process), whose
        workers open the folders by path; the blocks' statistics are summed in block order, so
        either engine gives the same sums."""
        names = tuple(shards)
        if rows is None:
            lengths = {m: len(s) for m, s in shards.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"shard folders of different lengths {lengths} need the rows that pair them")
            rows = {m: np.arange(len(shards[m]), dtype=np.int64) for m in names}
        if set(rows) != set(names) or len({len(r) for r in rows.values()}) != 1:
            raise ValueError(f"rows must pair every modality of {list(names)} with as many rows each")
        n = len(rows[names[0]])
        if n == 0:
            raise ValueError("statistics of no rows: the shards hold no pairs")
        tasks = [
            {m: np.asarray(rows[m][start : start + block_rows]) for m in names} for start in range(0, n, block_rows)
        ]
        setup = functools.partial(_open_shards, {m: str(s.folder) for m, s in shards.items()}, preprocess)
        return functools.reduce(operator.add, (engine or LocalEngine()).map(setup, _block_statistics, tasks))

    @property
    def dims(self) -> dict[str, int]:
        return {m: len(s) for m, s in self.sums.items()}

    def __add__(self, other: Statistics) -> Statistics:
        """The statistics of both sets of rows (same modalities, in the same order, and dimensions)."""
        if self.modalities != other.modalities or self.dims != other.dims:
            raise ValueError(
                f"cannot add statistics of {self.dims} to statistics of {other.dims}: "
                "the modalities, their order and dimensions must match"
            )
        return Statistics(
            self.modalities,
            self.count + other.count,
            {m: self.sums[m] + other.sums[m] for m in self.modalities},
            {k: self.products[k] + other.products[k] for k in self.products},
        )

    def mean(self, modality: str) -> np.ndarray:
        """Column means of ``modality`` (float64)."""
        return self.sums[modality] / self.count

    def product(self, a: str, b: str) -> np.ndarray:
        """``P_ab = X_a^T X_b`` (float64), whichever of the two blocks is stored."""
        return self.products[(a, b)] if (a, b) in self.products else self.products[(b, a)].T

    def centred(self, a: str, b: str, center: bool = True) -> np.ndarray:
        """``(X_a - 1 mean_a^T)^T (X_b - 1 mean_b^T) = P_ab - n mean_a mean_b^T`` (``P_ab`` itself
        without ``center``), float64."""
        product = self.product(a, b)
        return product - self.count * np.outer(self.mean(a), self.mean(b)) if center else product

    def covariance(self, a: str, b: str) -> np.ndarray:
        """Cross-covariance ``P_ab / n - mean_a mean_b^T`` (float64), as :func:`linalg.covariance`."""
        return self.product(a, b) / self.count - np.outer(self.mean(a), self.mean(b))

    # -- as arrays: estimator state and files -------------------------------------------
    def to_state(self) -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` (keys by modality position: ``sum/0``, ``product/0/1``, ``count``)."""
        index = {m: i for i, m in enumerate(self.modalities)}
        state = {"count": np.array(self.count, dtype=np.int64)}
        state.update({f"sum/{index[m]}": s for m, s in self.sums.items()})
        state.update({f"product/{index[a]}/{index[b]}": p for (a, b), p in self.products.items()})
        return state

    @classmethod
    def from_state(cls, modalities: tuple[str, ...], state: Mapping[str, np.ndarray]) -> Statistics:
        """The inverse of :meth:`to_state` for these ``modalities`` (in their order)."""
        try:
            return cls(
                tuple(modalities),
                int(state["count"]),
                {m: np.asarray(state[f"sum/{i}"], np.float64) for i, m in enumerate(modalities)},
                {
                    (modalities[i], modalities[j]): np.asarray(state[f"product/{i}/{j}"], np.float64)
                    for i, j in _blocks(tuple(range(len(modalities))))
                },
            )
        except KeyError as missing:
            raise ValueError(f"statistics of {list(modalities)} lack {missing}") from None

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (``.npz``; atomically)."""
        path = Path(path)
        header = json.dumps({"format": FORMAT, "modalities": list(self.modalities)})
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, header=np.array(header), **self.to_state())  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> Statistics:
        """Read statistics written by :meth:`save`; a clear error for anything else."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                header = json.loads(str(archive["header"]))
                arrays = {k: archive[k] for k in archive.files}
        except (OSError, KeyError, json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path}: cannot read statistics ({error})") from None
        found = header.get("format") if isinstance(header, dict) else None
        if found != FORMAT:
            raise ValueError(f"{path}: not xmodal statistics (format {found!r})")
        try:
            return cls.from_state(tuple(header["modalities"]), arrays)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: cannot read statistics ({error})") from None


Opened = tuple[dict[str, Shards], Callable[[np.ndarray], np.ndarray] | None]


def _open_shards(folders: Mapping[str, str], preprocess: Callable[[np.ndarray], np.ndarray] | None) -> Opened:
    return {m: Shards(folder) for m, folder in folders.items()}, preprocess


def _block_statistics(opened: Opened, rows: Mapping[str, np.ndarray]) -> Statistics:
    shards, preprocess = opened
    blocks = {m: shards[m].take(r, verify=True) for m, r in rows.items()}
    return Statistics.from_arrays({m: preprocess(x) for m, x in blocks.items()} if preprocess else blocks)


def _blocks(names: tuple[str, ...] | tuple[int, ...]) -> list[tuple]:
    """Every pair ``(a, b)`` with ``a`` at or before ``b``."""
    return list(itertools.combinations_with_replacement(names, 2))
