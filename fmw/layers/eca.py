"""ECA (Wang et al. 2020): a 1-D convolution across the pooled channel descriptor, with a kernel
size that grows with the channel count, then a sigmoid (the ``eca`` kind)."""

from __future__ import annotations

import math

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel size: the odd number nearest above ``|log2(C) + b| / gamma``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(WeightingLayer):
    """Efficient Channel Attention (Wang et al. 2020, arXiv:1910.03151).

    ``y = x * sigmoid(conv1d_k(avgpool(x)))``: a 1-D convolution across the pooled channel
    descriptor, no dimensionality reduction, ``k`` from the channel count (gamma=2, b=1).
    """

    kind = "eca"

    def __init__(self, channels: int, gamma: int = 2, b: int = 1, kernel_size: int | None = None) -> None:
        super().__init__()
        k = kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        descriptor = x.mean(dim=(2, 3)).view(n, 1, c)
        return x * self.gate(self.conv(descriptor).view(n, c, 1, 1))
