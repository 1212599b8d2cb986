"""Learned similarity functions: scorers trained on paired rows with a ranking objective.

Two forms of the score of a query row ``x`` and a gallery row ``y`` (both L2-normalised first
when ``normalize``):

* ``form="mlp"``: ``s(x, y) = w2 . relu(W [x, y, x*y, |x-y|] + b1) + b2`` with ``hidden``
  units (both sides must share a dimension, e.g. after an aligner);
* ``form="bilinear"``: ``s(x, y) = (U^T x) . (V^T y)``, a low-rank bilinear form (``U``:
  ``d_x x rank``, ``V``: ``d_y x rank``), which also compares spaces of different dimensions.

Both minimise the ranking loss with in-batch negatives: for each query of a batch, the
cross-entropy of its true gallery row against ``negatives`` other rows of the same batch
(``-log softmax`` of the true row's score). Training is :func:`xmodal.align.training.train`:
batches hold one row per group (e.g. one caption per image), so rows of one item are never
each other's negatives; early stopping on a validation pair set (held out from the training
groups when none is given); seeded. ``scorer(queries, gallery)`` gives the chunked
``shape``/``chunks()`` interface of :class:`~xmodal.retrieval.similarity.Scorer`, so
:func:`xmodal.evaluate.ranks` and :func:`xmodal.retrieval.topk` take it as they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.align.training import holdout, rows_by_group, seeded, train
from xmodal.core.arrays import check_embeddings, check_int, unit_rows
from xmodal.core.estimator import Estimator

FORMS = ("mlp", "bilinear")
_PAIRS_PER_CHUNK = 2**16  # query x gallery pairs scored at once by the MLP
_MONITORED_ROWS = 4096  # training rows monitored when there is no validation set


class _MLPScore(nn.Module):
    """``w2 . relu(W [x, y, x*y, |x-y|] + b1) + b2``; the first layer split by input block,
    so the ``x`` and ``y`` parts are computed once per row, not once per pair."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.query = nn.Linear(dim, hidden)
        self.gallery = nn.Linear(dim, hidden, bias=False)
        self.product = nn.Linear(dim, hidden, bias=False)
        self.difference = nn.Linear(dim, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def forward(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Scores of broadcast pairs: ``q`` (..., 1, d) against ``g`` (..., m, d) -> (..., m)."""
        h = self.query(q) + self.gallery(g) + self.product(q * g) + self.difference((q - g).abs())
        return self.out(F.relu(h)).squeeze(-1)

    def matrix(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Scores of every query row (n, d) against every gallery row (m, d): (n, m)."""
        return self(q[:, None, :], g[None, :, :])


class _BilinearScore(nn.Module):
    def __init__(self, dim_query: int, dim_gallery: int, rank: int):
        super().__init__()
        self.query = nn.Linear(dim_query, rank, bias=False)
        self.gallery = nn.Linear(dim_gallery, rank, bias=False)

    def forward(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (self.query(q) * self.gallery(g)).sum(-1)

    def matrix(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.query(q) @ self.gallery(g).T


_Score = _MLPScore | _BilinearScore


class LearnedSimilarity(Estimator):
    """A similarity function learned from row-paired (query, gallery) embeddings."""

    def __init__(
        self,
        form: str = "mlp",
        hidden: int = 128,
        rank: int = 128,
        negatives: int = 31,
        batch_size: int = 256,
        epochs: int = 10,
        patience: int = 2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        normalize: bool = True,
        seed: int = 0,
        progress: bool = False,
        validation_fraction: float = 0.1,
    ):
        self.form = form
        self.hidden = hidden
        self.rank = rank
        self.negatives = negatives
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.seed = seed
        self.progress = progress
        self.validation_fraction = validation_fraction

    # -- public API -----------------------------------------------------------------------
    def fit(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        groups: np.ndarray | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LearnedSimilarity:
        """Learn ``s`` so each query row scores its paired gallery row (same row index) above
        in-batch negatives; ``groups`` (one id per row) keeps rows of one item apart;
        ``validation`` is ``(queries, gallery)``, row-paired, for early stopping."""
        check_int(self.negatives, "negatives", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=2)
        check_int(self.epochs, "epochs", minimum=1)
        q, g = self._pair(queries, gallery, "training")
        group_rows = rows_by_group(groups, len(q))
        monitored = None if validation is None else self._pair(*validation, "validation")
        if monitored is None and (carved := holdout(group_rows, self.validation_fraction, self.seed)) is not None:
            group_rows, held = carved
            monitored = q[held], g[held]
        if len(group_rows) < 2:
            raise ValueError("fit() needs at least 2 groups of rows to draw negatives from")
        self._forget()
        rng = seeded(self.seed)
        self.dims_ = (q.shape[1], g.shape[1])
        module = self._build(*self.dims_)
        optimiser = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        monitor_q, monitor_g = monitored if monitored is not None else (q, g)
        monitor_rows = np.arange(min(len(monitor_q), _MONITORED_ROWS))
        monitor_candidates = self._candidates(monitor_rows, np.random.default_rng(self.seed + 1))
        history = train(
            module, optimiser,
            lambda batch: self._loss(module, q, g, batch, self._candidates(batch, rng)),
            lambda _: self._loss(module, monitor_q, monitor_g, monitor_rows, monitor_candidates),
            group_rows, rng, epochs=self.epochs, batch_size=self.batch_size, patience=self.patience,
            desc=f"{self.form} similarity", progress=self.progress,
        )  # fmt: skip
        self.weights_ = {k: v.numpy() for k, v in module.state_dict().items()}
        self.loss_history_ = np.asarray(history.losses)
        self._module = module
        return self

    def scorer(self, queries: np.ndarray, gallery: np.ndarray) -> LearnedScorer:
        """The lazy score matrix of ``queries`` against ``gallery`` under the learned ``s``."""
        module = self._fitted_module()
        q, g = self._pair(queries, gallery, "scored", paired=False)
        if (q.shape[1], g.shape[1]) != self.dims_:
            raise ValueError(
                f"{type(self).__name__} was fitted on dimensions {self.dims_}, got {(q.shape[1], g.shape[1])}"
            )
        return LearnedScorer(module, q, g)

    # -- helpers ---------------------------------------------------------------------------
    def _build(self, d_query: int, d_gallery: int) -> _Score:
        if self.form == "mlp":
            if d_query != d_gallery:
                raise ValueError(
                    f"the mlp form compares rows of one dimension (x*y, |x-y|), got {d_query} and {d_gallery}"
                )
            return _MLPScore(d_query, check_int(self.hidden, "hidden", minimum=1))
        if self.form == "bilinear":
            return _BilinearScore(d_query, d_gallery, check_int(self.rank, "rank", minimum=1))
        raise ValueError(f"unknown form {self.form!r}; choose one of {', '.join(FORMS)}")

    def _fitted_module(self) -> _Score:
        self._check_fitted()
        if "_module" not in self.__dict__:
            module = self._build(*self.dims_)
            module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights_.items()})
            self._module = module.eval()
        return self._module

    def _pair(
        self, queries: np.ndarray, gallery: np.ndarray, what: str, paired: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = check_embeddings(queries, f"{what} queries")
        g = check_embeddings(gallery, f"{what} gallery")
        if paired and len(q) != len(g):
            raise ValueError(f"{what} queries and gallery must be row-paired, got {len(q)} and {len(g)} rows")
        if self.normalize:
            q, g = unit_rows(q), unit_rows(g)
        return torch.from_numpy(q), torch.from_numpy(g)

    def _candidates(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(len(batch), 1 + negatives)`` rows: each query's own row first, then other rows of
        the batch (all of them when the batch is smaller than ``negatives + 1``)."""
        n = len(batch)
        k = min(self.negatives, n - 1)
        offsets = np.stack([rng.choice(n - 1, size=k, replace=False) for _ in range(n)]) + 1
        others = (np.arange(n)[:, None] + offsets) % n  # never the query's own position
        return np.concatenate([batch[:, None], batch[others]], axis=1)

    @staticmethod
    def _loss(
        module: nn.Module, q: torch.Tensor, g: torch.Tensor, rows: np.ndarray, candidates: np.ndarray
    ) -> torch.Tensor:
        scores = module(q[torch.from_numpy(rows)][:, None, :], g[torch.from_numpy(candidates)])
        return F.cross_entropy(scores, torch.zeros(len(rows), dtype=torch.long))


class LearnedScorer:
    """Chunked scores of a fitted learned similarity (``shape`` and ``chunks()`` as Scorer)."""

    def __init__(self, module: _Score, queries: torch.Tensor, gallery: torch.Tensor):
        self._module, self._queries, self._gallery = module, queries, gallery
        self.shape: tuple[int, int] = (len(queries), len(gallery))
        self.chunk_size = max(1, _PAIRS_PER_CHUNK // len(gallery))

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        with torch.no_grad():
            for start in range(0, self.shape[0], self.chunk_size):
                rows = slice(start, min(start + self.chunk_size, self.shape[0]))
                scores = self._module.matrix(self._queries[rows], self._gallery)
                yield rows, scores.numpy().astype(np.float32, copy=False)
