"""How many pairs do you need: held-out R@10 against the number of training pairs, per aligner,
over seeded draws, with a fitted saturating power law that says how many pairs a target needs.

Protocol: each draw is a seeded permutation of the training split's (caption, image) pairs; a
budget of ``n`` pairs takes its first ``n`` (nested subsets, so a curve of one draw only gains
pairs). Each closed-form aligner is fitted on them and scored on the evaluation split as
``xmodal bench`` scores it (CSLS ``csls_k``); the score of a point is the mean of text->image
and image->text R@10. A budget at or above the pairs available is one point (every draw is the
same set).

Extrapolation: ``R(n) = a - b n^(-c)`` (``a``: the plateau, ``0 <= a <= 100``; ``b, c > 0``)
fitted by least squares to each draw's curve and to all points together; the pairs needed for
a target ``R`` are ``(b / (a - R))^(1 / c)`` (none when ``R >= a``), reported as the median
and the range over the draws' fits. A plateau at its bound of 100 means no saturation was
seen in the budgets measured: the law then extrapolates a slow growth, to be trusted little
beyond the largest budget.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.core.arrays import check_int
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import SplitEmbeddings

BUDGETS = (30, 100, 300, 1000, 3000, 30000)
PLAN_ALIGNERS = ("lstsq-t2i", "procrustes-t2i", "procrustes-pca256", "cca-128-weighted", "cca-256-weighted")


@dataclass(frozen=True)
class PowerLaw:
    """``R(n) = plateau - scale * n ** -exponent``."""

    plateau: float
    scale: float
    exponent: float

    def __call__(self, n: float) -> float:
        return self.plateau - self.scale * n**-self.exponent

    def pairs_for(self, target: float) -> float:
        """Pairs at which the curve reaches ``target`` (``inf`` at or above the plateau)."""
        if target >= self.plateau:
            return math.inf
        return float((self.scale / (self.plateau - target)) ** (1 / self.exponent))


def fit_power_law(pairs: Sequence[float], scores: Sequence[float]) -> PowerLaw | None:
    """Least-squares fit of :class:`PowerLaw` to ``(pairs, scores)`` (at least 3 distinct
    budgets; ``None`` when the fit does not converge)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    x, y = np.asarray(pairs, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if len(np.unique(x)) < 3:
        return None

    def model(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * n**-c

    start = (min(100.0, y.max() + 5), max(1.0, (y.max() - y.min()) * x.min() ** 0.5), 0.5)
    try:
        with warnings.catch_warnings():  # an exact fit through 3 points has no covariance: fine here
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(model, x, y, p0=start, bounds=([0, 0, 1e-3], [100, np.inf, 3]), maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    return PowerLaw(float(a), float(b), float(c))


@dataclass
class Curve:
    """One aligner's scores: ``scores[budget]`` holds one mean R@10 per draw."""

    aligner: str
    scores: dict[int, list[float]] = field(default_factory=dict)
    fit: PowerLaw | None = None
    draw_fits: list[PowerLaw] = field(default_factory=list)

    def summary(self, budget: int) -> tuple[float, float, float, float]:
        """``(mean, standard deviation, min, max)`` of the draws at ``budget``."""
        s = np.asarray(self.scores[budget])
        return float(s.mean()), float(s.std()), float(s.min()), float(s.max())

    def pairs_for(self, target: float) -> tuple[float, float, float]:
        """``(median, low, high)`` over the draws' fits of the pairs that reach ``target`` (the
        fit of all points when no draw's converged; ``nan`` without any)."""
        fits = self.draw_fits or ([self.fit] if self.fit is not None else [])
        if not fits:
            return math.nan, math.nan, math.nan
        needed = [f.pairs_for(target) for f in fits]
        return float(np.median(needed)), min(needed), max(needed)


@dataclass
class PlanResult:
    title: str
    budgets: list[int]
    available: int
    draws: int
    csls_k: int
    curves: list[Curve]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "budgets": self.budgets, "available": self.available, "draws": self.draws,
            "csls_k": self.csls_k, "seconds": round(self.seconds, 1),
            "curves": [
                {"aligner": c.aligner, "scores": {str(b): v for b, v in c.scores.items()},
                 "fit": None if c.fit is None else vars(c.fit), "draw_fits": [vars(f) for f in c.draw_fits]}
                for c in self.curves
            ],
        }  # fmt: skip


def pair_budget_curves(
    train: SplitEmbeddings,
    test: SplitEmbeddings,
    *,
    aligners: Sequence[str] = PLAN_ALIGNERS,
    budgets: Sequence[int] = BUDGETS,
    draws: int = 3,
    seed: int = 0,
    csls_k: int = 10,
    title: str = "",
) -> PlanResult:
    """The curves of the module docstring: ``aligners`` fitted on ``budgets`` pairs of ``train``
    (``draws`` seeded nested draws), scored on ``test``."""
    draws = check_int(draws, "draws", minimum=1)
    t_rows, i_rows = train.pair_rows()
    available = len(t_rows)
    chosen = sorted({min(check_int(b, "budget", minimum=2), available) for b in budgets})
    orders = [np.random.default_rng([seed, d]).permutation(available) for d in range(draws)]
    started = time.perf_counter()
    curves = []
    for name in aligners:
        curve = Curve(name)
        for budget in chosen:
            for order in orders[: 1 if budget == available else draws]:
                take = np.sort(order[:budget])
                pairs = {"text": train.text[t_rows[take]], "image": train.image[i_rows[take]]}
                try:
                    aligner = make_aligner(name, pair=("text", "image")).fit(pairs)
                except ValueError:  # e.g. more PCA components than pairs: no point at this budget
                    break
                metrics = evaluate_bidirectional(
                    aligner.transform(test.text, "text"), aligner.transform(test.image, "image"),
                    test.text_items, test.image_items, csls_k=csls_k,
                )  # fmt: skip
                curve.scores.setdefault(budget, []).append((metrics["t2i/R@10"] + metrics["i2t/R@10"]) / 2)
        points = [(b, s) for b, values in curve.scores.items() for s in values]
        curve.fit = fit_power_law([p for p, _ in points], [s for _, s in points])
        for d in range(draws):
            own = [(b, v[min(d, len(v) - 1)]) for b, v in curve.scores.items()]
            fitted = fit_power_law([p for p, _ in own], [s for _, s in own])
            if fitted is not None:
                curve.draw_fits.append(fitted)
        curves.append(curve)
    return PlanResult(title, chosen, available, draws, csls_k, curves, time.perf_counter() - started)


def plan_rows(result: PlanResult, target: float) -> tuple[list[str], list[list[str]]]:
    """The table: per aligner, mean ± std of each budget, the plateau, and pairs for ``target``."""
    columns = ["aligner", *[f"{b:,} pairs" for b in result.budgets], "plateau", f"pairs for R@10 {target:g}"]
    rows = []
    for curve in result.curves:
        cells = [curve.aligner]
        for budget in result.budgets:
            if budget not in curve.scores:
                cells.append("– (cannot fit)")
                continue
            mean, std, _, _ = curve.summary(budget)
            cells.append(f"{mean:.1f} ± {std:.1f}" if len(curve.scores[budget]) > 1 else f"{mean:.1f}")
        cells.append("–" if curve.fit is None else f"{curve.fit.plateau:.1f}")
        cells.append(_needed(*curve.pairs_for(target)))
        rows.append(cells)
    return columns, rows


def _needed(estimate: float, low: float, high: float) -> str:
    if math.isnan(estimate):
        return "no fit"
    if math.isinf(estimate):
        return "not reached (above the plateau)"
    spread = "" if math.isnan(low) else f" ({_count(low)}–{_count(high)} over draws)"
    return f"≈ {_count(estimate)}{spread}"


def _count(n: float) -> str:
    return "∞" if math.isinf(n) else f"{n:,.0f}"


def plan_figure(result: PlanResult, path: Path) -> Path:
    """R@10 against pairs (log scale) per aligner: the mean, the draws' range, the fitted law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in result.curves:
        budgets = sorted(curve.scores)
        if not budgets:
            continue
        grid = np.geomspace(budgets[0], max(result.budgets) * 10, 200)
        summaries = [curve.summary(b) for b in budgets]
        (line,) = ax.plot(budgets, [s[0] for s in summaries], "o-", label=curve.aligner)
        ax.fill_between(
            budgets, [s[2] for s in summaries], [s[3] for s in summaries], alpha=0.2, color=line.get_color()
        )
        if curve.fit is not None:
            ax.plot(grid, [curve.fit(n) for n in grid], ":", color=line.get_color())
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("training pairs")
    ax.set_ylabel(f"mean R@10 (t2i, i2t){f', CSLS k={result.csls_k}' if result.csls_k else ''}")
    ax.set_title(result.title or "pairs needed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
