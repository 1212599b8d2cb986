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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.align.base import Aligner
from xmodal.align.closed_form import CCAAligner
from xmodal.align.losses import PCMCLoss, PCMRLoss
from xmodal.align.training import holdout, logit_scale_parameter, rows_by_group, seeded, train

HEADS = ("linear", "mlp", "gmlp")
OBJECTIVES = ("pcmc", "pcmr")


class MLPHead(nn.Module):
    """``Linear(x) + MLP(x)``: a linear map plus a residual two-layer GELU MLP."""

    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)

    def zero_residual(self) -> None:
        """Make the MLP branch output zero (the head is then its linear map)."""
        out = self.mlp[-1]
        assert isinstance(out, nn.Linear)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)


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

    def zero_residual(self) -> None:
        """Make the gMLP branch output zero (the head is then its linear map)."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


class HeadAligner(Aligner):
    """One trained head per modality into a ``dim``-dimensional shared space (unit vectors).

    Trained by :func:`xmodal.align.training.train` with the arguments of :meth:`Aligner.fit`:
    ``groups`` (one id per row, e.g. the image of each caption) makes every batch hold one row
    per group, so several captions of one image are never each other's negatives; each epoch
    visits every group once with a random row. ``validation`` (row-paired embeddings, one row
    per group) drives early stopping: the weights of the epoch with the lowest validation loss
    are kept; without it, ``validation_fraction`` of the groups are held out (seeded by
    ``seed``) to serve as one. ``present`` (``{modality: bool per row}``) marks the rows that
    really have a modality, for N-modality data where items miss some (see
    ``ModalityEmbeddings.training_table``); the objective ignores absent entries. ``views``
    add rows: each view row joins the group of the row it is a view of.
    """

    n_modalities = None
    iterative = True

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
        validation_fraction: float = 0.1,
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
        self.validation_fraction = validation_fraction

    # -- model ------------------------------------------------------------------------------
    def _build(self) -> Heads:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")

        def make(d_in: int) -> nn.Module:
            if self.head == "linear":
                return nn.Linear(d_in, self.dim)
            if self.head == "mlp":
                return MLPHead(d_in, self.dim, self.hidden, self.dropout)
            return GMLPHead(d_in, self.dim, self.tokens, self.width, self.depth, self.dropout)

        return Heads({m: make(self.dims_[m]) for m in self.modalities_})

    def _loss(
        self,
        heads: Heads,
        logit_scale: torch.Tensor,
        batch: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        features = {m: F.normalize(heads[m](x), dim=-1) for m, x in batch.items()}
        if self.objective == "pcmc":
            return PCMCLoss()(features, logit_scale, present)
        return PCMRLoss(self.negative_target)(features, present)

    # -- training ---------------------------------------------------------------------------
    def _train(
        self,
        data: dict[str, np.ndarray],
        groups: np.ndarray | None,
        present: dict[str, np.ndarray] | None,
        validation: dict[str, np.ndarray] | None,
        views: list[dict[str, np.ndarray]],
    ) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.init not in ("random", "cca"):
            raise ValueError(f"unknown init {self.init!r}; choose 'random' or 'cca'")
        n, copies = len(next(iter(data.values()))), 1 + len(views)
        arrays = {m: np.concatenate([x, *(v[m] for v in views)]) if views else x for m, x in data.items()}
        group_rows = rows_by_group(
            None if groups is None and not views else np.tile(np.arange(n) if groups is None else groups, copies),
            n * copies,
        )
        masks = None if present is None else {m: np.tile(mask, copies) for m, mask in present.items()}
        tensors = {m: torch.from_numpy(np.ascontiguousarray(x, np.float32)) for m, x in arrays.items()}
        monitored: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None] | None = None
        if validation is not None:
            monitored = (
                {m: torch.from_numpy(np.ascontiguousarray(x, np.float32)) for m, x in validation.items()},
                None,
            )
        elif (carved := holdout(group_rows, self.validation_fraction, self.seed)) is not None:
            group_rows, held = carved
            monitored = ({m: t[held] for m, t in tensors.items()}, _take(masks, held))
        rng = seeded(self.seed)
        heads = self._build()
        if self.init == "cca":
            fitted = np.sort(np.concatenate(group_rows))
            init_linear_from_cca(heads, {m: x[fitted] for m, x in arrays.items()}, self.dim)
        logit_scale = logit_scale_parameter(self.temperature)
        params = list(heads.parameters()) + ([logit_scale] if self.objective == "pcmc" else [])
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

        def batch_loss(rows: np.ndarray) -> torch.Tensor:
            return self._loss(heads, logit_scale, {m: t[rows] for m, t in tensors.items()}, _take(masks, rows))

        def monitor(rows: np.ndarray | None) -> torch.Tensor:
            if monitored is not None:
                return self._loss(heads, logit_scale, *monitored)
            assert rows is not None  # no validation: a sample of this epoch's training rows
            return batch_loss(rows[: 4 * self.batch_size])

        history = train(
            heads,
            optimiser,
            batch_loss,
            monitor,
            group_rows,
            rng,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            logit_scale=logit_scale,
            desc=f"{self.head} head",
            progress=self.progress,
        )
        self.weights_ = {k: v.numpy() for k, v in heads.state_dict().items()}
        self.logit_scale_ = np.float64(logit_scale.item())
        self.loss_history_ = np.asarray(history.losses)
        self._heads = heads

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


class Heads(nn.ModuleDict):
    """One head per modality, looked up by modality name. torch's module names may not hold a
    dot, so a head is stored under its name with ``.`` written ``:`` (``text.fr`` -> ``text:fr``)."""

    def __init__(self, heads: dict[str, nn.Module]):
        keys = {_module_key(m) for m in heads}
        if len(keys) != len(heads):
            raise ValueError(f"modality names {sorted(heads)} clash once '.' is written ':'")
        super().__init__({_module_key(m): head for m, head in heads.items()})

    def __getitem__(self, modality: str) -> nn.Module:
        return super().__getitem__(_module_key(modality))


def _module_key(modality: str) -> str:
    return modality.replace(".", ":")


def init_linear_from_cca(heads: Heads, data: dict[str, np.ndarray], dim: int) -> None:
    """Start every head at the weighted-CCA solution of ``data`` (rows already preprocessed):
    its linear part maps as CCA does and its residual branch (if any) starts at zero. Needs
    two modalities."""
    if len(data) != 2:
        raise ValueError("init='cca' needs exactly two modalities")
    cca = CCAAligner(n_components=dim, reg=1.0, weight_power=0.5, normalize=False).fit(data)
    with torch.no_grad():
        for modality in data:
            head = heads[modality]
            if isinstance(head, (MLPHead, GMLPHead)):
                head.zero_residual()
                linear = head.linear
            else:
                assert isinstance(head, nn.Linear)
                linear = head
            matrix, offset = cca.affine(modality)
            linear.weight.copy_(torch.from_numpy(matrix.T.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(offset.astype(np.float32)))


def _take(masks: dict[str, np.ndarray] | None, rows: np.ndarray) -> dict[str, torch.Tensor] | None:
    return None if masks is None else {m: torch.from_numpy(mask[rows]) for m, mask in masks.items()}
