"""CBAM (Woo et al. 2018): a channel gate from average- and max-pooled descriptors, then a spatial
gate from channel-pooled maps (the ``cbam`` kind)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmw.layers.base import WeightingLayer
from fmw.layers.squeeze_excitation import squeeze_excitation_hidden


class CBAMChannelGate(nn.Module):
    """CBAM's channel stage: one shared MLP over the average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int, min_hidden: int) -> None:
        super().__init__()
        hidden = squeeze_excitation_hidden(channels, reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def mlp(self, descriptor: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(descriptor)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pooling ops rather than mean/amax: the same values, and on the CPU in bf16 a backward pass
        # several times cheaper (amax's backward splits the gradient among ties through full-size
        # float copies; max pooling routes it to one maximum, an equally valid subgradient)
        average = F.adaptive_avg_pool2d(x, 1)
        maximum = F.adaptive_max_pool2d(x, 1)
        return self.gate(self.mlp(average) + self.mlp(maximum))


class CBAMSpatialGate(nn.Module):
    """CBAM's spatial stage: a kxk convolution over the channel-wise [mean; max] maps."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)  # max: see above
        return self.gate(self.conv(pooled))


class CBAM(WeightingLayer):
    """Convolutional Block Attention Module (Woo et al. 2018, arXiv:1807.06521).

    ``y = x' * Ms(x')`` with ``x' = x * Mc(x)``: channel gate first, then spatial gate, as the
    paper's best ordering. Deviation: the 7x7 spatial conv has a bias and no BatchNorm.
    """

    kind = "cbam"

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channel = CBAMChannelGate(channels, reduction, min_hidden)
        self.spatial = CBAMSpatialGate(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)
