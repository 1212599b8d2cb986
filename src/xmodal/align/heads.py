"""Trained projection heads: linear, MLP and gMLP, one per modality, into a shared space.

Heads are trained on frozen embeddings with a contrastive (PCMC; CLIP's symmetric InfoNCE for
two modalities) or a similarity-regression (PCMR) objective, a learnable temperature, AdamW,
and early stopping on a validation loss. Training is seeded and single-threaded-deterministic.

gMLP (Liu et al. 2021, "Pay Attention to MLPs"): the input vector is turned into a short
sequence of ``tokens`` by a learned split (a linear map reshaped to ``tokens x width``); each
block is ``x + W_out(SGU(GELU(W_in(LN(x)))))`` where the spatial gating unit splits channels
into ``(u, v)`` and returns ``u * (W_tokens LN(v) + b)``, mixing along the token axis. The
token mixer starts at ``W = 0, b = 1``, so each gate starts as the identity on ``u``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from xmodal.align.base import Aligner
from xmodal.align.losses import PCMCLoss, PCMRLoss
from xmodal.align.training import EarlyStopping, epoch_rows, rows_by_group
from xmodal.similarity import check_embeddings

HEADS = ("linear", "mlp", "gmlp")
OBJECTIVES = ("pcmc", "pcmr")


class MLPHead(nn.Module):
    """``Linear(x) + MLP(x)``: a linear map plus a residual two-layer GELU MLP."""

    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.mlp = nn.Sequential(
            nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


class SpatialGatingUnit(nn.Module):
    """``u * (W LN(v) + b)`` with ``W`` mixing the token axis; starts as the identity on ``u``."""

    def __init__(self, channels: int, tokens: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mix = nn.Linear(tokens, tokens)
        nn.init.zeros_(self.mix.weight)
        nn.init.ones_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, tokens, 2 * channels)
        u, v = x.chunk(2, dim=-1)
        v = self.mix(self.norm(v).transpose(1, 2)).transpose(1, 2)
        return u * v


class GMLPBlock(nn.Module):
    def __init__(self, width: int, tokens: int, expansion: int, dropout: float):
        super().__init__()
        hidden = width * expansion
        self.norm = nn.LayerNorm(width)
        self.proj_in = nn.Linear(width, 2 * hidden)
        self.gate = SpatialGatingUnit(hidden, tokens)
        self.proj_out = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.proj_out(self.gate(F.gelu(self.proj_in(self.norm(x))))))


class GMLPHead(nn.Module):
    """Linear map plus a residual gMLP over ``tokens`` learned tokens of ``width`` channels."""

    def __init__(self, d_in: int, d_out: int, tokens: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.tokens, self.width = tokens, width
        self.linear = nn.Linear(d_in, d_out)
        self.split = nn.Linear(d_in, tokens * width)
        self.blocks = nn.Sequential(*(GMLPBlock(width, tokens, 2, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(tokens * width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.split(x).view(-1, self.tokens, self.width)
        return self.linear(x) + self.out(self.norm(self.blocks(seq)).flatten(1))


class HeadAligner(Aligner):
    """One trained head per modality into a ``dim``-dimensional shared space (unit vectors).

    ``fit(embeddings, groups=None, validation=None, present=None)``: ``groups`` (one id per row, e.g. the
    image of each caption) makes every batch hold one row per group, so several captions of
    one image are never each other's negatives; each epoch visits every group once with a
    random row. ``validation`` (row-paired embeddings, one row per group) drives early
    stopping: the weights of the epoch with the lowest validation loss are kept. ``present``
    (``{modality: bool per row}``) marks the rows that really have a modality, for N-modality
    data where items miss some (see ``ModalityEmbeddings.training_table``); the objective
    ignores absent entries.
    """

    n_modalities = None

    def __init__(
        self,
        head: str = "linear",
        dim: int = 256,
        objective: str = "pcmc",
        hidden: int = 1024,
        tokens: int = 8,
        width: int = 64,
        depth: int = 2,
        dropout: float = 0.1,
        epochs: int = 60,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        temperature: float = 0.05,
        negative_target: float = 0.0,
        patience: int = 8,
        init: str = "random",
        seed: int = 0,
        progress: bool = False,
        normalize: bool = True,
    ):
        super().__init__(normalize=normalize)
        self.head = head
        self.dim = dim
        self.objective = objective
        self.hidden = hidden
        self.tokens = tokens
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.negative_target = negative_target
        self.patience = patience
        self.init = init
        self.seed = seed
        self.progress = progress

    # -- model ------------------------------------------------------------------------------
    def _build(self) -> nn.ModuleDict:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")

        def make(d_in: int) -> nn.Module:
            if self.head == "linear":
                return nn.Linear(d_in, self.dim)
            if self.head == "mlp":
                return MLPHead(d_in, self.dim, self.hidden, self.dropout)
            return GMLPHead(d_in, self.dim, self.tokens, self.width, self.depth, self.dropout)

        return nn.ModuleDict({m: make(self.dims_[m]) for m in self.modalities_})

    def _project(self, heads: nn.ModuleDict, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: F.normalize(heads[m](x), dim=-1) for m, x in batch.items()}

    def _loss(self, heads, logit_scale, batch: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        features = self._project(heads, batch)
        if self.objective == "pcmc":
            return PCMCLoss()(features, logit_scale, present)
        return PCMRLoss(self.negative_target)(features, present)

    # -- training ---------------------------------------------------------------------------
    def _fit(
        self,
        data: dict[str, np.ndarray],
        groups: np.ndarray | None = None,
        validation: dict[str, np.ndarray] | None = None,
        present: dict[str, np.ndarray] | None = None,
    ) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        n = len(next(iter(data.values())))
        group_rows = rows_by_group(groups, n)
        masks = _check_present(present, data, n)
        val = None if validation is None else self._validation_tensors(validation)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        heads = self._build()
        if self.init == "cca":
            init_linear_from_cca(heads, data, self.dim)
        elif self.init != "random":
            raise ValueError(f"unknown init {self.init!r}; choose 'random' or 'cca'")
        logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / self.temperature)))
        params = list(heads.parameters()) + ([logit_scale] if self.objective == "pcmc" else [])
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        tensors = {m: torch.from_numpy(np.ascontiguousarray(x, np.float32)) for m, x in data.items()}

        best = {k: v.detach().clone() for k, v in heads.state_dict().items()}
        stopping, history = EarlyStopping(self.patience), []
        for _ in tqdm(range(self.epochs), desc=f"{self.head} head", disable=not self.progress):
            heads.train()
            rows = epoch_rows(group_rows, rng)
            for start in range(0, len(rows) - 1, self.batch_size):
                batch_rows = torch.from_numpy(rows[start : start + self.batch_size])
                if len(batch_rows) < 2:
                    continue
                loss = self._loss(
                    heads, logit_scale, {m: t[batch_rows] for m, t in tensors.items()}, _take(masks, batch_rows)
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    logit_scale.clamp_(0.0, math.log(100.0))
            heads.eval()
            with torch.no_grad():
                if val is not None:
                    epoch_loss = float(self._loss(heads, logit_scale, val))
                else:
                    sample = torch.from_numpy(rows[: 4 * self.batch_size])
                    monitored = {m: t[sample] for m, t in tensors.items()}
                    epoch_loss = float(self._loss(heads, logit_scale, monitored, _take(masks, sample)))
            history.append(epoch_loss)
            if stopping.step(epoch_loss):
                best = {k: v.detach().clone() for k, v in heads.state_dict().items()}
            elif stopping.stop:
                break
        heads.load_state_dict(best)
        self.weights_ = {k: v.numpy() for k, v in heads.state_dict().items()}
        self.logit_scale_ = np.float64(logit_scale.item())
        self.loss_history_ = np.asarray(history)
        self._heads = heads

    def _validation_tensors(self, validation: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if set(validation) != set(self.modalities_):
            raise ValueError(
                f"validation modalities {sorted(validation)} differ from the fitted ones {sorted(self.modalities_)}"
            )
        arrays = {m: self._preprocess(check_embeddings(x, f"validation {m} embeddings")) for m, x in validation.items()}
        if len({len(x) for x in arrays.values()}) != 1:
            raise ValueError("validation embeddings must be row-paired (same number of rows)")
        return {m: torch.from_numpy(np.ascontiguousarray(x, np.float32)) for m, x in arrays.items()}

    # -- inference --------------------------------------------------------------------------
    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        heads = self.__dict__.get("_heads")
        if heads is None:  # loaded from disk: rebuild from the saved weights
            heads = self._build()
            heads.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights_.items()})
            heads.eval()
            self._heads = heads
        with torch.no_grad():
            out = F.normalize(heads[modality](torch.from_numpy(np.ascontiguousarray(x, np.float32))), dim=-1)
        return out.numpy()


def init_linear_from_cca(heads: nn.ModuleDict, data: dict[str, np.ndarray], dim: int) -> None:
    """Start every head at the weighted-CCA solution of ``data`` (rows already preprocessed):
    its linear part maps as CCA does and its residual branch (if any) starts at zero. Needs
    two modalities."""
    from xmodal.align.closed_form import CCAAligner

    if len(data) != 2:
        raise ValueError("init='cca' needs exactly two modalities")
    cca = CCAAligner(n_components=dim, reg=1.0, weight_power=0.5, normalize=False).fit(data)
    with torch.no_grad():
        for modality, head in heads.items():
            linear = head if isinstance(head, nn.Linear) else head.linear
            matrix, offset = cca.affine(modality)
            linear.weight.copy_(torch.from_numpy(matrix.T.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(offset.astype(np.float32)))
            residual_out = {MLPHead: lambda h: h.mlp[-1], GMLPHead: lambda h: h.out}.get(type(head))
            if residual_out is not None:
                nn.init.zeros_(residual_out(head).weight)
                nn.init.zeros_(residual_out(head).bias)


def _check_present(
    present: dict[str, np.ndarray] | None, data: dict[str, np.ndarray], n: int
) -> dict[str, torch.Tensor] | None:
    """``present[m]``: bool per row, False where the row lacks modality ``m`` (its values are ignored)."""
    if present is None:
        return None
    unknown = set(present) - set(data)
    if unknown:
        raise ValueError(f"present names modalities that were not given: {sorted(unknown)}")
    masks = {}
    for m, mask in present.items():
        mask = np.asarray(mask)
        if mask.shape != (n,) or mask.dtype != bool:
            raise ValueError(f"present[{m!r}] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
        masks[m] = torch.from_numpy(mask)
    return masks


def _take(masks: dict[str, torch.Tensor] | None, rows: torch.Tensor) -> dict[str, torch.Tensor] | None:
    return None if masks is None else {m: mask[rows] for m, mask in masks.items()}

