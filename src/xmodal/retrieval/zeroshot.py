"""Zero-shot classification in a shared space: each class is the mean of its prompts' unit
embeddings (CLIP-style prompt ensembling over templates and class names), and a query's
class scores are its similarities to these prototypes."""

from __future__ import annotations

import numpy as np

from xmodal.core.arrays import check_embeddings, unit_rows
from xmodal.core.config import DEFAULT_METRIC
from xmodal.retrieval.similarity import Scorer


def class_prototypes(prompts: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Float32 ``n_classes x d``: row ``c`` is the mean of the L2-normalised rows of
    ``prompts`` whose class (``classes``, one index per row) is ``c``; every class in
    ``0..classes.max()`` needs a prompt."""
    x = unit_rows(check_embeddings(prompts, "prompts"))
    owner = np.asarray(classes)
    if owner.shape != (x.shape[0],) or not np.issubdtype(owner.dtype, np.integer) or owner.min() < 0:
        raise ValueError(f"classes must hold one class index >= 0 per prompt, got shape {owner.shape}")
    counts = np.bincount(owner)
    if not counts.all():
        raise ValueError(f"class {int(np.argmin(counts))} has no prompt")
    sums = np.zeros((counts.size, x.shape[1]), dtype=np.float32)
    np.add.at(sums, owner, x)
    return sums / counts[:, None].astype(np.float32)


def zero_shot_scores(
    queries: np.ndarray,
    prompts: np.ndarray,
    classes: np.ndarray,
    *,
    metric: str = DEFAULT_METRIC,
    csls_k: int = 0,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Float32 ``n_queries x n_classes`` scores of ``queries`` against the prototypes of the
    ``prompts`` (see :func:`class_prototypes`), all in one shared space, under ``metric``; with
    ``csls_k`` CSLS against the ``reference`` rows (see :class:`~xmodal.retrieval.Scorer`)."""
    scorer = Scorer(queries, class_prototypes(prompts, classes), metric, csls_k, reference=reference)
    return np.concatenate([block for _, block in scorer.chunks()])
