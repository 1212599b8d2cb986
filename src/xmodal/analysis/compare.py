"""Measurements across shared spaces: the geometry (gap) table, the similarity-function table,
and how the gap relates to retrieval quality across aligners."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from xmodal.analysis.geometry import (
    alignment,
    centroid_gap,
    exact_w2,
    gaussian_w2,
    hubness,
    linear_cka,
    sliced_w2,
    uniformity,
)
from xmodal.analysis.spaces import FittedSpace
from xmodal.core.arrays import unit_rows
from xmodal.evaluate import ranks, recall_metrics
from xmodal.retrieval.learned import FORMS, LearnedSimilarity
from xmodal.retrieval.similarity import SIMILARITIES, pairwise
from xmodal.store import SplitEmbeddings

GAP_COLUMNS = (
    "centroid gap",
    "W2 exact",
    "W2 sliced",
    "W2 Gaussian",
    "CKA",
    "alignment",
    "uniformity text",
    "uniformity image",
    "hub skew t2i",
    "never t2i %",
    "hub skew i2t",
    "never i2t %",
    "t2i R@10",
    "i2t R@10",
    "mean R@10",
)
HUB_K = 10
EXACT_SAMPLES = 1000


def gap_row(
    space: SplitEmbeddings, seed: int = 0, known_ranks: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Every geometry measure of one space, on L2-normalised rows (cosine geometry):
    centroid gap and the W2 variants between all text and all image rows (exact W2 on the
    first caption of each of at most 1,000 items against their images), CKA and alignment
    over every (caption, image) pair, uniformity per modality, hubness of the top-10 lists
    in both directions, and cosine R@10 (from ``known_ranks``, :func:`cosine_ranks` of ``space``,
    when the caller already has them)."""
    text, image = unit_rows(space.text), unit_rows(space.image)
    t_rows, i_rows = space.pair_rows()
    first_t, first_i = space.pair_rows(first_only=True)
    scores = text @ image.T
    recall = _recall(known_ranks or ranks_both_ways(scores, space))
    t2i_hubs, i2t_hubs = hubness(_top(scores, HUB_K), len(image)), hubness(_top(scores.T, HUB_K), len(text))
    return {
        "centroid gap": centroid_gap(text, image),
        "W2 exact": exact_w2(text[first_t], image[first_i], n_samples=EXACT_SAMPLES, seed=seed),
        "W2 sliced": sliced_w2(text, image, seed=seed),
        "W2 Gaussian": gaussian_w2(text, image),
        "CKA": linear_cka(text[t_rows], image[i_rows]),
        "alignment": alignment(text[t_rows], image[i_rows]),
        "uniformity text": uniformity(text, seed=seed),
        "uniformity image": uniformity(image, seed=seed),
        "hub skew t2i": t2i_hubs["skew"],
        "never t2i %": t2i_hubs["never"],
        "hub skew i2t": i2t_hubs["skew"],
        "never i2t %": i2t_hubs["never"],
        "t2i R@10": recall["t2i/R@10"],
        "i2t R@10": recall["i2t/R@10"],
        "mean R@10": (recall["t2i/R@10"] + recall["i2t/R@10"]) / 2,
    }


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest scores (in no particular order)."""
    k = min(k, scores.shape[1])
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def gap_correlations(
    rows: dict[str, dict[str, float]],
    measures: Sequence[str] = ("W2 exact", "W2 sliced", "W2 Gaussian", "centroid gap", "CKA"),
) -> dict[str, dict[str, float]]:
    """Pearson and Spearman correlation of each measure with mean R@10 across the rows given
    (``{measure: {"pearson": r, "spearman": rho, "n": rows}}``; NaN with fewer than 3 rows)."""
    recall = np.array([r["mean R@10"] for r in rows.values()])
    out = {}
    for measure in measures:
        values = np.array([r[measure] for r in rows.values()])
        if len(values) < 3 or np.ptp(values) == 0 or np.ptp(recall) == 0:
            out[measure] = {"pearson": float("nan"), "spearman": float("nan"), "n": len(values)}
            continue
        out[measure] = {
            "pearson": float(stats.pearsonr(values, recall)[0]),
            "spearman": float(stats.spearmanr(values, recall)[0]),
            "n": len(values),
        }
    return out


def similarity_rows(
    spaces: Sequence[FittedSpace],
    train: SplitEmbeddings,
    test: SplitEmbeddings,
    dev: SplitEmbeddings | None = None,
    similarities: Sequence[str] = SIMILARITIES,
    learned: Sequence[str] = (),
    seed: int = 0,
) -> list[dict]:
    """R@1/5/10 both ways on ``test`` (a dense score matrix each, so for test-sized splits) for
    every space x similarity the dimensions allow: the
    fixed similarities need one space (not the unaligned one across dimensions), the learned
    ones (``"mlp"``, ``"bilinear"``) are fitted on ``train`` mapped into the space (early
    stopping on ``dev``); the MLP needs equal dimensions, the bilinear form does not."""
    unknown = [name for name in learned if name not in FORMS]
    if unknown:
        raise ValueError(f"unknown learned similarity {unknown[0]!r}; choose from {', '.join(FORMS)}")
    rows = []
    for space in spaces:
        mapped_test = _mapped(space, test)
        same_dim = mapped_test.text.shape[1] == mapped_test.image.shape[1]
        for metric in similarities if same_dim else ():
            scores = pairwise(mapped_test.text, mapped_test.image, metric)
            rows.append({"space": space.name, "similarity": metric, **_recall(ranks_both_ways(scores, test))})
        for name in learned:
            if name == "mlp" and not same_dim:
                continue
            model = _fit_learned(
                LearnedSimilarity(form=name, seed=seed),
                _mapped(space, train),
                None if dev is None else _mapped(space, dev),
            )
            scores = np.concatenate([s for _, s in model.scorer(mapped_test.text, mapped_test.image).chunks()])
            rows.append(
                {"space": space.name, "similarity": f"learned {name}", **_recall(ranks_both_ways(scores, test))}
            )
    return rows


def ranks_both_ways(scores: np.ndarray, split: SplitEmbeddings) -> dict[str, np.ndarray]:
    """``{"t2i": ranks, "i2t": ranks}`` from one dense text x image score matrix of ``split``."""
    return {
        "t2i": ranks(scores, split.text_items, split.image_items),
        "i2t": ranks(scores.T, split.image_items, split.text_items),
    }


def cosine_ranks(split: SplitEmbeddings) -> dict[str, np.ndarray]:
    """:func:`ranks_both_ways` under cosine similarity."""
    return ranks_both_ways(unit_rows(split.text) @ unit_rows(split.image).T, split)


def _recall(ranks_by_direction: dict[str, np.ndarray]) -> dict[str, float]:
    """Recall metrics of both directions, keys prefixed ``t2i/`` and ``i2t/``."""
    return {f"{d}/{k}": v for d, r in ranks_by_direction.items() for k, v in recall_metrics(r).items()}


def _mapped(space: FittedSpace, split: SplitEmbeddings) -> SplitEmbeddings:
    """``split`` in the space; the unaligned space keeps each modality's own dimension."""
    return split if space.aligner is None else space.apply(split)


def _fit_learned(model: LearnedSimilarity, train: SplitEmbeddings, dev: SplitEmbeddings | None) -> LearnedSimilarity:
    pairs = train.training_pairs()
    first = None if dev is None else dev.first_pairs()
    validation = None if first is None else (first["text"], first["image"])
    return model.fit(pairs["text"], pairs["image"], groups=train.pair_items(), validation=validation)
