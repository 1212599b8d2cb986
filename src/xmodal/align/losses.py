"""Training objectives for projection heads (open_clip style: small ``nn.Module`` losses).

- :class:`ClipLoss`: symmetric InfoNCE between two row-paired batches (Radford et al. 2021).
- :class:`PCMCLoss`: the sum, over every pair of modalities present, of the symmetric InfoNCE
  term, with a mask for items that miss a modality (Sánchez & Laguna 2024, "PCMC"). With two
  complete modalities it equals :class:`ClipLoss`.
- :class:`PCMRLoss`: squared error between each pair's cosine-similarity matrix and a target
  with 1 on matching pairs and ``negative_target`` elsewhere (the non-contrastive "PCMR"
  alternative), summed over pairs of modalities. Exact form, per pair with ``n`` rows:
  ``mean_i (s_ii - 1)^2 + mean_{i != j} max(0, s_ij - t)^2``. Off-diagonal entries already
  below the target are not pushed further (a hinge), so retrieval's two constraints —
  matches most similar, non-matches below them — are all the loss asks for; and the
  diagonal and off-diagonal means are weighted equally, because a plain mean over the
  ``n^2`` entries gives the ``n`` matches a weight of ``1/n`` (at a batch of 1,024 the
  matches barely count and heads collapse to near-chance retrieval, measured).

Features are expected L2-normalised; ``logit_scale`` is the log of the inverse temperature.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``(CE(s a b^T, I) + CE(s b a^T, I)) / 2`` with ``s = exp(logit_scale)``; rows are pairs."""
    if a.shape != b.shape:
        raise ValueError(f"paired features need the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = logit_scale.exp() * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ClipLoss(nn.Module):
    """Symmetric InfoNCE of two modalities."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        return symmetric_info_nce(a, b, logit_scale)


class PCMCLoss(nn.Module):
    """Sum of symmetric InfoNCE terms over every pair of modalities, masking absent items.

    ``features[m]`` is ``(n, d)`` for every modality ``m``; ``present[m]`` (bool, ``(n,)``)
    marks rows that have modality ``m`` (default: all). A pair's term uses only the rows
    present in both; a pair with fewer than two such rows contributes nothing.
    """

    def forward(
        self,
        features: dict[str, torch.Tensor],
        logit_scale: torch.Tensor,
        present: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        total = logit_scale.new_zeros(())
        for m1, m2 in itertools.combinations(features, 2):
            rows = _rows_in_both(features, present, m1, m2)
            if rows.sum() >= 2:
                total = total + symmetric_info_nce(features[m1][rows], features[m2][rows], logit_scale)
        return total


class PCMRLoss(nn.Module):
    """Similarity regression: pull matching cosines to 1, push others below ``negative_target``."""

    def __init__(self, negative_target: float = 0.0):
        super().__init__()
        self.negative_target = negative_target

    def forward(
        self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        terms = []
        for m1, m2 in itertools.combinations(features, 2):
            rows = _rows_in_both(features, present, m1, m2)
            if rows.sum() < 2:
                continue
            sims = features[m1][rows] @ features[m2][rows].T
            eye = torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
            positive = (sims[eye] - 1.0) ** 2
            negative = F.relu(sims[~eye] - self.negative_target) ** 2
            terms.append(positive.mean() + negative.mean())
        if not terms:
            return next(iter(features.values())).new_zeros(())
        return torch.stack(terms).sum()


def _rows_in_both(
    features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None, m1: str, m2: str
) -> torch.Tensor:
    n = features[m1].shape[0]
    if present is None:
        return torch.ones(n, dtype=torch.bool, device=features[m1].device)
    everyone = torch.ones(n, dtype=torch.bool, device=features[m1].device)
    return present.get(m1, everyone) & present.get(m2, everyone)
