"""CSLS, the cross-domain similarity local scaling of Lample et al. (2018, "Word translation
without parallel data"), the hubness correction that evaluation and search share::

    csls(x, y) = 2 s(x, y) - r_gallery(x) - r_reference(y)

``r_gallery(x)`` is the mean similarity of query ``x`` to its ``k`` nearest gallery items;
``r_reference(y)`` the mean similarity of gallery item ``y`` to its ``k`` nearest reference
queries (the evaluated queries themselves in a benchmark, a gallery's captions in a search
index). A gallery item close to many queries (a hub) is pushed down; a query in a dense
region is not favoured.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def top_k_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` largest entries of each row of ``scores`` (``k`` clipped to the row length)."""
    cut = scores.shape[1] - min(k, scores.shape[1])
    return np.partition(scores, cut, axis=1)[:, cut:].mean(axis=1)


def column_top_k_mean(chunks: Iterable[np.ndarray], k: int) -> np.ndarray:
    """Mean of the ``k`` largest entries of each column of the row blocks ``chunks`` (stacked),
    keeping only ``k`` rows in memory."""
    top: np.ndarray | None = None
    for block in chunks:
        top = block.copy() if top is None else np.concatenate([top, block])
        if top.shape[0] > k:
            top = np.partition(top, top.shape[0] - k, axis=0)[-k:]
    if top is None:
        raise ValueError("column_top_k_mean needs at least one block of rows")
    return top.mean(axis=0)


def csls(scores: np.ndarray, r_gallery: np.ndarray, r_reference: np.ndarray) -> np.ndarray:
    """``2 scores - r_gallery[:, None] - r_reference[None, :]`` for a block of query rows
    (``r_gallery``: one value per query row, ``r_reference``: one per gallery column)."""
    return 2 * scores - r_gallery[:, None] - r_reference[None, :]
