"""Figures of the analysis report (matplotlib, Agg backend, written as PNG)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from xmodal.core.arrays import unit_rows
from xmodal.store import SplitEmbeddings

TEXT_COLOUR, IMAGE_COLOUR = "tab:blue", "tab:orange"


def projection_figure(spaces: Mapping[str, SplitEmbeddings], path: Path, n_pairs: int = 150, seed: int = 0) -> Path:
    """One panel per space: both modalities (unit rows; first caption of each item) projected
    on the first two principal components of their union, ``n_pairs`` matched pairs joined."""
    methods = ["PCA"] + (["UMAP"] if _has_umap() else [])
    fig, axes = _grid(len(spaces) * len(methods), width=4.2, height=3.8)
    panels = ((name, split, method) for name, split in spaces.items() for method in methods)
    for ax, (name, split, method) in zip(axes, panels):
        t_rows, i_rows = split.pair_rows(first_only=True)
        pick = np.random.default_rng(seed).permutation(len(t_rows))[:n_pairs]
        text, image = unit_rows(split.text[t_rows[pick]]), unit_rows(split.image[i_rows[pick]])
        points = _embed_2d(np.vstack([text, image]), method, seed)
        t2, i2 = points[: len(pick)], points[len(pick) :]
        ax.plot(np.stack([t2[:, 0], i2[:, 0]]), np.stack([t2[:, 1], i2[:, 1]]), color="0.75", lw=0.5, zorder=1)
        ax.scatter(t2[:, 0], t2[:, 1], s=9, color=TEXT_COLOUR, label="text (caption)", zorder=2)
        ax.scatter(i2[:, 0], i2[:, 1], s=9, color=IMAGE_COLOUR, label="image", zorder=2)
        ax.set(title=f"{name} ({method})", xlabel=f"{method} 1", ylabel=f"{method} 2")
        ax.legend(loc="best", fontsize=7)
    fig.suptitle(f"Both modalities in each space, {len(pick)} matched pairs joined by lines")
    return _save(fig, path)


def similarity_histograms(
    spaces: Mapping[str, SplitEmbeddings], path: Path, n_negatives: int = 20000, seed: int = 0
) -> Path:
    """One panel per space: cosine similarity of matched (caption, image) pairs vs random
    non-matched ones."""
    fig, axes = _grid(len(spaces), width=4.2, height=3.2)
    rng = np.random.default_rng(seed)
    for ax, (name, split) in zip(axes, spaces.items()):
        text, image = unit_rows(split.text), unit_rows(split.image)
        t_rows, i_rows = split.pair_rows()
        matched = np.sum(text[t_rows] * image[i_rows], axis=1)
        a, b = rng.integers(len(text), size=n_negatives), rng.integers(len(image), size=n_negatives)
        keep = split.text_items[a] != split.image_items[b]
        other = np.sum(text[a[keep]] * image[b[keep]], axis=1)
        bins = np.linspace(min(matched.min(), other.min()), max(matched.max(), other.max()), 60).tolist()
        ax.hist(other, bins=bins, density=True, alpha=0.6, color="0.5", label="non-matched")
        ax.hist(matched, bins=bins, density=True, alpha=0.6, color="tab:green", label="matched")
        ax.set(title=name, xlabel="cosine similarity", ylabel="density")
        ax.legend(fontsize=7)
    fig.suptitle("Cosine similarity of matched vs non-matched (caption, image) pairs")
    return _save(fig, path)


def recall_curves(ranks_by_space: Mapping[str, Mapping[str, np.ndarray]], path: Path, max_k: int = 50) -> Path:
    """R@K for K = 1..max_k, one line per space, one panel per direction (``{"t2i": ranks, ...}``)."""
    directions = list(next(iter(ranks_by_space.values())))
    fig, axes = _grid(len(directions), width=5.5, height=4.0, columns=len(directions))
    ks = np.arange(1, max_k + 1)
    for ax, direction in zip(axes, directions):
        for name, by_direction in ranks_by_space.items():
            r = by_direction[direction]
            ax.plot(ks, [100.0 * np.mean(r <= k) for k in ks], label=name)
        ax.set(
            title={"t2i": "text → image", "i2t": "image → text"}.get(direction, direction),
            xlabel="K",
            ylabel="R@K (%)",
            xlim=(1, max_k),
            ylim=(0, 100),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Recall at K (cosine)")
    return _save(fig, path)


def _embed_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "UMAP":
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    return PCA(n_components=2, random_state=seed).fit_transform(x)


def _has_umap() -> bool:
    return importlib.util.find_spec("umap") is not None


def _grid(n: int, width: float, height: float, columns: int = 3) -> tuple[Figure, list[Axes]]:
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
