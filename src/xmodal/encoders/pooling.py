"""Torch modules of the image encoders, in their own module so that importing
:mod:`xmodal.encoders.image` does not import torch."""

from __future__ import annotations

import torch
from torch.nn.functional import normalize


class PooledFeatures(torch.nn.Module):
    """Image batch -> global average pool of ``model``'s last feature map (``extract_features``)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.model.extract_features(x)  # type: ignore[operator]
        return features.mean(dim=(2, 3))


class StagePooledFeatures(torch.nn.Module):
    """Image batch -> ``[u(head), u([u(s_1), ..., u(s_K)])]``: the unit global pool of an
    EfficientNet's last feature map beside the unit concatenation of the unit global pools of
    each stage's output ``s_k`` (the last block before the channel count changes); ``u`` makes
    rows unit length. The stages keep what the classifier's head pools away (colour, texture,
    parts) at the cost of ``sum(stage widths)`` more dimensions."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        blocks = list(model._blocks)  # type: ignore[arg-type]
        widths = [b._block_args.output_filters for b in blocks]
        self.stage_ends = [i for i in range(len(blocks)) if i + 1 == len(blocks) or widths[i + 1] != widths[i]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))  # type: ignore[operator]
        stages = []
        for i, block in enumerate(m._blocks):  # type: ignore[arg-type]
            x = block(x)
            if i in self.stage_ends:
                stages.append(normalize(x.mean(dim=(2, 3)), dim=1))
        head = m._swish(m._bn1(m._conv_head(x)))  # type: ignore[operator]
        return torch.cat([normalize(head.mean(dim=(2, 3)), dim=1), normalize(torch.cat(stages, 1), dim=1)], 1)
