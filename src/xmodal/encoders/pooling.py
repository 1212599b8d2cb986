"""Torch modules of the image encoders, in their own module so that importing
:mod:`xmodal.encoders.image` does not import torch."""

from __future__ import annotations

import torch


class PooledFeatures(torch.nn.Module):
    """Image batch -> global average pool of ``model``'s last feature map (``extract_features``)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.model.extract_features(x)  # type: ignore[operator]
        return features.mean(dim=(2, 3))
