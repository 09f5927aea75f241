"""Squeeze-and-excitation (Hu et al. 2018): global average pooling, a bottleneck MLP and a
sigmoid give one gate per channel (the ``channel`` kind)."""

from __future__ import annotations

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


def squeeze_excitation_hidden(channels: int, reduction: int = 16, min_hidden: int = 8) -> int:
    """Hidden width of the excitation MLP: ``C // reduction``, never below ``min(min_hidden, C)``."""
    return max(channels // reduction, min(min_hidden, channels), 1)


class SqueezeExcitation(WeightingLayer):
    """Squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507).

    ``y = x * sigmoid(W2 relu(W1 avgpool(x)))``; reduction 16 as in the paper, with the
    hidden width kept at least ``min(8, C)`` so narrow layers do not collapse to zero units.
    """

    kind = "channel"

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 8,
        activation: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        hidden = squeeze_excitation_hidden(channels, reduction, min_hidden)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.activation = activation()
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.activation(self.fc1(self.pool(x)))))
