"""The base class of every fmw weighting layer, and the identity layer ``none`` that gives a
network without weighting the same sites as the others."""

from __future__ import annotations

import torch
from torch import nn


class WeightingLayer(nn.Module):
    """Base class: a module that multiplies its input by one or more gates; ``kind`` is its
    registry name. fmw finds the gates by observing the products (``fmw.probe``), not from the layer."""

    kind: str = ""


class NoWeighting(WeightingLayer):
    """Identity: applies no gate, so that every model of the family has the same sites."""

    kind = "none"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
