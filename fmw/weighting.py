"""Feature-map weighting layers and the registry that maps a short name to each class.

Every layer returns ``x * gate`` and produces its gate(s) in named submodules, so a
forward hook on a gate module reads (or replaces) exactly what the layer applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "WeightingLayer",
    "NoWeighting",
    "ChannelScaling",
    "SpatialAttention",
    "SqueezeExcitation",
    "CBAM",
    "EfficientChannelAttention",
    "WEIGHTING_LAYERS",
    "create_weighting",
    "eca_kernel_size",
    "squeeze_excitation_hidden",
]


class WeightingLayer(nn.Module):
    """Base class: a module that multiplies its input by one or more gates.

    ``kind`` is the registry name; ``gate_modules()`` maps a stage name ("channel",
    "spatial") to the submodule whose output is that stage's gate, in the order the
    gates are applied.
    """

    kind: str = ""

    def gate_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError


class NoWeighting(WeightingLayer):
    """Identity: applies no gate, so that every model of the family has the same sites."""

    kind = "none"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def gate_modules(self) -> dict[str, nn.Module]:
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


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

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.gate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


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

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"spatial": self.gate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(x))


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

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.gate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.activation(self.fc1(self.pool(x)))))


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

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.channel.gate, "spatial": self.spatial.gate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


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

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.gate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        descriptor = x.mean(dim=(2, 3)).view(n, 1, c)
        return x * self.gate(self.conv(descriptor).view(n, c, 1, 1))


WEIGHTING_LAYERS: dict[str, type[WeightingLayer]] = {
    cls.kind: cls
    for cls in (NoWeighting, ChannelScaling, SpatialAttention, SqueezeExcitation, CBAM, EfficientChannelAttention)
}


def create_weighting(kind: str, channels: int) -> WeightingLayer:
    """Build the weighting layer registered as ``kind`` for ``channels`` feature maps."""
    try:
        cls = WEIGHTING_LAYERS[kind]
    except KeyError:
        known = ", ".join(WEIGHTING_LAYERS)
        raise ValueError(f"unknown weighting kind {kind!r}; expected one of: {known}") from None
    return cls(channels)
