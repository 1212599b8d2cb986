"""Checks and the row normaliser that every layer shares: embeddings, integers, unit rows."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_embeddings(x: Any, name: str) -> np.ndarray:
    """Validate a non-empty 2-D array of finite real numbers; return it as C-contiguous float32.

    Values outside the float32 range count as inf. Raises ``ValueError`` naming ``name``.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        n_bad = int(bad.sum())
        rows = "row" if n_bad == 1 else "rows"
        raise ValueError(f"{name} contain NaN or inf in {n_bad} {rows} (first: row {int(np.argmax(bad))})")
    return arr


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (norms below 1e-12 count as 1e-12, so zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
