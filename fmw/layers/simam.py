"""SimAM (Yang et al. 2021): a parameter-free, full-size gate, one value per channel and position,
from how far each activation stands out of its channel (the ``simam`` kind)."""

from __future__ import annotations

import torch
from torch import nn

from fmw.layers.base import WeightingLayer


class SimAM(WeightingLayer):
    """SimAM, a simple parameter-free attention module (Yang, Zhang, Li and Xie, ICML 2021).

    Each activation's inverse minimal energy, from its channel's mean ``mu`` and variance
    ``var = sum((x - mu)^2) / (H*W - 1)``: ``e = (x - mu)^2 / (4 (var + lambda)) + 0.5``, and
    ``y = x * sigmoid(e)``: a gate (N, C, H, W) that lifts the activations that stand out of their
    channel. ``lambda`` = 1e-4 as in the paper. It has no parameters, so ``channels`` only keeps
    the constructor's signature that of every weighting layer.
    """

    kind = "simam"

    def __init__(self, channels: int, regularisation: float = 1e-4) -> None:
        super().__init__()
        self.channels = channels
        self.regularisation = regularisation
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = x.shape[2] * x.shape[3]
        deviation = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        variance = deviation.sum(dim=(2, 3), keepdim=True) / max(positions - 1, 1)
        energy = deviation / (4 * (variance + self.regularisation)) + 0.5
        return x * self.gate(energy)
