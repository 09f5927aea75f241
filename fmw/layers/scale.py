"""Per-channel scaling: a learned, input-independent vector that multiplies each feature map
(the ``scale`` kind)."""

from __future__ import annotations

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


class LearnedScale(nn.Module):
    """Gate of ``ChannelScaling``: returns its (C,) parameter as an (N, C, 1, 1) gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1).expand(x.shape[0], -1, 1, 1)


class ChannelScaling(WeightingLayer):
    """Per-channel scaling: ``y = x * s`` with a learned vector ``s`` initialised to 1.

    The static counterpart of channel attention (as in LayerScale, Touvron et al. 2021,
    applied per feature map); the gate does not depend on the input.
    """

    kind = "scale"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = LearnedScale(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)
