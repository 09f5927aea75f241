"""Coordinate attention (Hou et al. 2021): one gate per channel and row, one per channel and
column, from the map pooled along each axis (the ``coord`` kind)."""

from __future__ import annotations

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


class CoordinateAttention(WeightingLayer):
    """Coordinate attention (Hou, Zhou and Feng 2021, arXiv:2103.02907).

    The map is averaged along its width, ``z_h`` (N, C, H, 1), and along its height, ``z_w``
    (N, C, 1, W); both go through one shared 1x1 convolution to ``max(8, C // reduction)``
    channels with batch norm and hard-swish, are split again and each turned into a gate by its
    own 1x1 convolution and a sigmoid: ``y = x * a_w * a_h`` with ``a_w`` (N, C, 1, W) and
    ``a_h`` (N, C, H, 1). Reduction 32 and the minimum width 8 are the paper's.
    """

    kind = "coord"

    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.squeeze = nn.Conv2d(channels, hidden, kernel_size=1)
        self.norm = nn.BatchNorm2d(hidden)
        self.activation = nn.Hardswish()
        self.height = nn.Conv2d(hidden, channels, kernel_size=1)
        self.width = nn.Conv2d(hidden, channels, kernel_size=1)
        self.height_gate = nn.Sigmoid()
        self.width_gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        along_height = x.mean(dim=3, keepdim=True)  # (N, C, H, 1)
        along_width = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
        joint = self.activation(self.norm(self.squeeze(torch.cat([along_height, along_width], dim=2))))
        rows, columns = joint.split([height, joint.shape[2] - height], dim=2)
        gate_w = self.width_gate(self.width(columns.transpose(2, 3)))  # (N, C, 1, W)
        gate_h = self.height_gate(self.height(rows))  # (N, C, H, 1)
        return x * gate_w * gate_h
