"""Small data, honestly: a warning when pairs are few for the dimensions, and regularisation
chosen by K-fold cross-validation on the training pairs (``xmodal fit --auto``).

The presets' regularisation was chosen on Flickr8k's dev split with 30,000 training pairs; with
a few hundred pairs the best ridge, CCA regularisation and number of components are other
ones. :func:`cross_validate` splits the training *groups* (items) into ``folds`` seeded folds,
fits each candidate of the aligner's grid on the other folds, and scores it on the held-out
fold by the mean reciprocal rank of the right item, both ways (a smooth criterion; recall at
10 saturates on small folds). The best candidate is refitted on every pair.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmodal.align import Aligner, CCAAligner, LeastSquaresAligner, ProcrustesAligner
from xmodal.evaluate import ranks
from xmodal.retrieval import pairwise

MIN_ITEMS = 10  # fewer items than this are refused: no fit means anything
DEFAULT_FOLDS = 5
GRIDS: dict[type, dict[str, list[Any]]] = {
    CCAAligner: {"n_components": [16, 32, 64, 128, 256], "reg": [0.1, 1.0, 10.0, 100.0], "weight_power": [0.5, 1.0]},
    LeastSquaresAligner: {"ridge": [0.1, 1.0, 10.0, 100.0, 1000.0]},
    ProcrustesAligner: {"n_components": [None, 16, 32, 64, 128, 256]},
}


def small_data_warning(n_items: int, dims: dict[str, int], auto: bool) -> str | None:
    """A warning when ``n_items`` training items are few for embeddings of ``dims``; raises
    when they are too few to fit anything (fewer than :data:`MIN_ITEMS`)."""
    if n_items < MIN_ITEMS:
        raise ValueError(f"{n_items} training items are too few to fit an aligner (at least {MIN_ITEMS})")
    largest = max(dims.values())
    if n_items >= largest:
        return None
    did = (
        "regularisation chosen by cross-validation (--auto)"
        if auto
        else "kept the preset's regularisation, chosen with 6,000 Flickr8k items; --auto chooses it by cross-validation"
    )
    return (
        f"only {n_items} training items for {largest}-dimensional embeddings: a closed-form map has more "
        f"parameters than pairs to fit them and results may be near chance; {did}"
    )


@dataclass
class Selection:
    """What :func:`cross_validate` tried and chose (recorded in the model's ``about``)."""

    params: dict[str, Any]
    folds: int
    seed: int
    scores: list[dict[str, Any]] = field(default_factory=list)  # params + mean MRR of each candidate

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.params,
            "folds": self.folds,
            "seed": self.seed,
            "criterion": "MRR",
            "scores": self.scores,
        }


def candidates(aligner: Aligner, dims: dict[str, int], n_train: int) -> list[dict[str, Any]]:
    """The grid of ``aligner``'s class, numbers of components clipped to what its data can take
    (the smaller dimension, and the training rows of a fold)."""
    grid = GRIDS.get(type(aligner))
    if grid is None:
        known = ", ".join(c.__name__ for c in GRIDS)
        raise ValueError(f"--auto chooses the regularisation of {known}, not {type(aligner).__name__}")
    limit = min(*dims.values(), n_train)
    grid = dict(grid)
    if "n_components" in grid:
        clipped = (None if k is None else min(k, limit) for k in grid["n_components"])
        grid["n_components"] = list(dict.fromkeys(clipped))
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def cross_validate(
    aligner: Aligner,
    embeddings: dict[str, np.ndarray],
    groups: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> Selection:
    """Choose ``aligner``'s regularisation by ``folds``-fold cross-validation over ``groups``
    (see the module docstring); ``aligner`` is left unfitted, with the chosen parameters set."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < 2 * folds:
        raise ValueError(f"{len(unique)} groups are too few for {folds}-fold cross-validation")
    fold_of_group = dict(zip(np.random.default_rng(seed).permutation(unique).tolist(), np.arange(len(unique)) % folds))
    fold = np.array([fold_of_group[g] for g in groups.tolist()])
    dims = {m: x.shape[1] for m, x in embeddings.items()}
    n_train = int(np.sum(fold != 0))
    selection = Selection({}, folds, seed)
    best = -np.inf
    grid = candidates(aligner, dims, n_train)
    widest: dict[tuple[int, float], CCAAligner] = {}  # CCA: one fit per fold and reg serves every width
    for params in grid:
        scores = []
        for k in range(folds):
            held = fold == k
            train = {m: x[~held] for m, x in embeddings.items()}
            trial: Aligner
            if isinstance(aligner, CCAAligner):
                key = (k, params["reg"])
                if key not in widest:
                    most = max(c["n_components"] for c in grid)
                    widest[key] = CCAAligner(most, params["reg"], normalize=aligner.normalize).fit(train)
                trial = widest[key].truncated(params["n_components"], params["weight_power"])
            else:
                trial = type(aligner)(**{**aligner.get_params(), **params}).fit(train)
            scores.append(_mean_reciprocal_rank(trial, {m: x[held] for m, x in embeddings.items()}, groups[held]))
        score = float(np.mean(scores))
        selection.scores.append({**params, "MRR": round(score, 4)})
        if score > best:
            best, selection.params = score, params
    aligner.set_params(**selection.params)
    return selection


def _mean_reciprocal_rank(aligner: Aligner, held: dict[str, np.ndarray], groups: np.ndarray) -> float:
    """Mean of 1/rank of the right item, each modality querying the other's distinct values
    (an image repeated once per caption counts once; equal values of two items count twice)."""
    shared = {}
    for m, x in held.items():
        seen: set[tuple[object, bytes]] = set()
        rows = []
        for row, (group, values) in enumerate(zip(groups.tolist(), x)):
            key = (group, values.tobytes())
            if key not in seen:
                seen.add(key)
                rows.append(row)
        shared[m] = (aligner.transform(x[rows], m), groups[rows])
    first, second = shared.values()
    found = [ranks(pairwise(q[0], g[0]), q[1], g[1]) for q, g in ((first, second), (second, first))]
    return float(np.mean([np.mean(1.0 / r) for r in found]))
