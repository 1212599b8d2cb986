"""Learned similarity functions: scorers trained on paired rows with a ranking objective.

Two scorers of a query row ``x`` and a gallery row ``y`` (both L2-normalised first when
``normalize``):

* :class:`MLPSimilarity`: ``s(x, y) = w2 . relu(W [x, y, x*y, |x-y|] + b1) + b2`` (both
  sides must share a dimension, e.g. after an aligner);
* :class:`BilinearSimilarity`: ``s(x, y) = (U^T x) . (V^T y)``, a low-rank bilinear form
  (``U``: ``d_x x rank``, ``V``: ``d_y x rank``), which also compares spaces of different
  dimensions.

Both minimise the ranking loss with in-batch negatives: for each query of a batch, the
cross-entropy of its true gallery row against ``negatives`` other rows of the same batch
(``-log softmax`` of the true row's score). Batches hold one row per group (e.g. one caption
per image), so rows of one item are never each other's negatives; early stopping on a
validation pair set; seeded. Estimators follow scikit-learn: ``fit`` returns self, learned
state ends in ``_``; ``scorer(queries, gallery)`` gives the chunked ``shape``/``chunks()``
interface of :class:`xmodal.similarity.Scorer`, so :func:`xmodal.evaluate.ranks` and
:func:`xmodal.retrieval.topk` take it as they are.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from xmodal.align.training import EarlyStopping, epoch_rows, rows_by_group
from xmodal.similarity import check_embeddings, check_int, unit_rows

_PAIRS_PER_CHUNK = 2**16  # query x gallery pairs scored at once by the MLP


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


class LearnedSimilarity:
    """Base estimator; subclasses build the scoring module in ``_build(d_query, d_gallery)``."""

    def __init__(
        self,
        negatives: int = 31,
        batch_size: int = 256,
        epochs: int = 10,
        patience: int = 2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        normalize: bool = True,
        seed: int = 0,
        progress: bool = False,
    ):
        self.negatives = negatives
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.seed = seed
        self.progress = progress

    # -- public API -----------------------------------------------------------------------
    def fit(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        groups: np.ndarray | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LearnedSimilarity:
        """Learn ``s`` so each query row scores its paired gallery row (same row index) above
        in-batch negatives; ``groups`` (one id per row) keeps rows of one item apart."""
        check_int(self.negatives, "negatives", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=2)
        check_int(self.epochs, "epochs", minimum=1)
        q, g = self._pair(queries, gallery, "training")
        group_rows = rows_by_group(groups, len(q))
        if len(group_rows) < 2:
            raise ValueError("fit() needs at least 2 groups of rows to draw negatives from")
        val = None if validation is None else self._pair(*validation, "validation")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.dims_ = (q.shape[1], g.shape[1])
        module = self._build(*self.dims_)
        optimiser = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        monitor = val if val is not None else (q, g)
        monitor_rows = np.arange(min(len(monitor[0]), 4096))
        monitor_candidates = self._candidates(monitor_rows, np.random.default_rng(self.seed + 1))
        best = {k: v.clone() for k, v in module.state_dict().items()}
        stopping, history = EarlyStopping(self.patience), []
        for _ in tqdm(range(self.epochs), desc=type(self).__name__, disable=not self.progress):
            module.train()
            rows = epoch_rows(group_rows, rng)
            for start in range(0, len(rows) - 1, self.batch_size):
                batch = rows[start : start + self.batch_size]
                if len(batch) < 2:
                    continue
                loss = self._loss(module, q, g, batch, self._candidates(batch, rng))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            module.eval()
            with torch.no_grad():
                epoch_loss = float(self._loss(module, *monitor, monitor_rows, monitor_candidates))
            history.append(epoch_loss)
            if stopping.step(epoch_loss):
                best = {k: v.clone() for k, v in module.state_dict().items()}
            elif stopping.stop:
                break
        module.load_state_dict(best)
        self.weights_ = {k: v.numpy() for k, v in module.state_dict().items()}
        self.loss_history_ = np.asarray(history)
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

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``."""
        names = [p for p in inspect.signature(LearnedSimilarity.__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def save(self, path: str | Path) -> Path:
        """Write the fitted scorer to ``path`` (``.npz``, no pickle)."""
        self._fitted_module()
        path = Path(path)
        header = {"class": type(self).__name__, "params": self.get_params(), "dims": list(self.dims_)}
        np.savez(path, header=np.array(json.dumps(header)), **{f"w/{k}": v for k, v in self.weights_.items()})
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @staticmethod
    def load(path: str | Path) -> LearnedSimilarity:
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive:
                raise ValueError(f"{path} is not an xmodal learned-similarity file (no header)")
            header = json.loads(str(archive["header"]))
            weights = {k[2:]: archive[k] for k in archive.files if k.startswith("w/")}
        classes = {cls.__name__: cls for cls in (MLPSimilarity, BilinearSimilarity)}
        if header["class"] not in classes:
            raise ValueError(f"{path}: unknown learned similarity {header['class']!r}")
        model = classes[header["class"]](**header["params"])
        model.dims_ = tuple(header["dims"])
        model.weights_ = weights
        return model

    # -- helpers ---------------------------------------------------------------------------
    def _build(self, d_query: int, d_gallery: int) -> nn.Module:
        raise NotImplementedError

    def _fitted_module(self) -> nn.Module:
        if not hasattr(self, "weights_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")
        if "_module" not in self.__dict__:
            module = self._build(*self.dims_)
            module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights_.items()})
            self._module = module.eval()
        return self._module

    def _pair(self, queries: np.ndarray, gallery: np.ndarray, what: str, paired: bool = True):
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
    def _loss(module: nn.Module, q: torch.Tensor, g: torch.Tensor, rows: np.ndarray, candidates: np.ndarray):
        scores = module(q[torch.from_numpy(rows)][:, None, :], g[torch.from_numpy(candidates)])
        return F.cross_entropy(scores, torch.zeros(len(rows), dtype=torch.long))


class MLPSimilarity(LearnedSimilarity):
    """An MLP over ``[x, y, x*y, |x-y|]`` with one hidden layer of ``hidden`` units."""

    def __init__(self, hidden: int = 128, **training: Any):
        super().__init__(**training)
        self.hidden = hidden

    def get_params(self) -> dict[str, Any]:
        return {"hidden": self.hidden, **super().get_params()}

    def _build(self, d_query: int, d_gallery: int) -> nn.Module:
        if d_query != d_gallery:
            raise ValueError(
                f"MLPSimilarity compares rows of one dimension (x*y, |x-y|), got {d_query} and {d_gallery}"
            )
        return _MLPScore(d_query, check_int(self.hidden, "hidden", minimum=1))


class BilinearSimilarity(LearnedSimilarity):
    """``(U^T x) . (V^T y)`` with ``U``, ``V`` of rank ``rank``."""

    def __init__(self, rank: int = 128, **training: Any):
        super().__init__(**training)
        self.rank = rank

    def get_params(self) -> dict[str, Any]:
        return {"rank": self.rank, **super().get_params()}

    def _build(self, d_query: int, d_gallery: int) -> nn.Module:
        return _BilinearScore(d_query, d_gallery, check_int(self.rank, "rank", minimum=1))


class LearnedScorer:
    """Chunked scores of a fitted learned similarity (``shape`` and ``chunks()`` as Scorer)."""

    def __init__(self, module: nn.Module, queries: torch.Tensor, gallery: torch.Tensor):
        self._module, self._queries, self._gallery = module, queries, gallery
        self.shape: tuple[int, int] = (len(queries), len(gallery))
        self.chunk_size = max(1, _PAIRS_PER_CHUNK // len(gallery))

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        with torch.no_grad():
            for start in range(0, self.shape[0], self.chunk_size):
                rows = slice(start, min(start + self.chunk_size, self.shape[0]))
                scores = self._module.matrix(self._queries[rows], self._gallery)
                yield rows, scores.numpy().astype(np.float32, copy=False)
