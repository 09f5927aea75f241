"""Spatial attention: a 1x1 convolution to one channel and a sigmoid give a map in [0, 1] that
multiplies every channel (the ``spatial`` kind)."""

from __future__ import annotations

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


class SpatialAttention(WeightingLayer):
    """Spatial attention: ``y = x * sigmoid(conv1x1(x))``, one map in [0, 1] over all channels.

    The 1x1-convolution form of spatial gating (cf. the spatial branch of scSE,
    Roy et al. 2018); CBAM's pooled 7x7 variant is ``CBAM``.
    """

    kind = "spatial"

    def __init__(self, channels: int, gate_layer: type[nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(x))
