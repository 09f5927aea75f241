"""The fmw network family: one small plain CNN whose ``weighting=`` switch puts the same kind of
weighting layer at the same sites, plus its JSON-serialisable configuration.

The backbone follows the published airbench93 network (Jordan, 2024, "94% on CIFAR-10 in 3.29
seconds on a single GPU", arXiv:2404.00498): a frozen 2x2 patch-whitening convolution, then three
conv-pool-BN-GELU / conv-BN-GELU blocks of 64, 128 and 128 channels, a global max pool and a
linear head with a fixed output scale. fmw's change: a weighting layer on every block's output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
from torch import nn

from fmw.device import model_device
from fmw.layers import WEIGHTING_LAYERS, create_weighting

__all__ = [
    "FAMILY",
    "FMWNet",
    "NetConfig",
    "PatchWhitening",
    "WeightedBlock",
    "build_model",
    "count_multiply_adds",
    "count_parameters",
]

FAMILY = "fmw-whiten"
WHITEN_KERNEL = 2


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one ``FMWNet``; ``to_json``/``from_json`` round-trip exactly."""

    weighting: str = "none"
    num_classes: int = 10
    in_channels: int = 3
    stem_width: int = 24
    widths: tuple[int, ...] = (64, 128, 128)
    logit_scale: float = 1 / 9
    family: str = FAMILY

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTING_LAYERS:
            raise ValueError(
                f"unknown weighting kind {self.weighting!r}; expected one of: {', '.join(WEIGHTING_LAYERS)}"
            )

        def positive_integer(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if not isinstance(self.widths, (list, tuple)) or not self.widths or not all(map(positive_integer, self.widths)):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("num_classes", "in_channels", "stem_width"):
            if not positive_integer(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if (
            isinstance(self.logit_scale, bool)
            or not isinstance(self.logit_scale, (int, float))
            or not self.logit_scale > 0
        ):
            raise ValueError(f"logit_scale must be a positive number, got {self.logit_scale!r}")
        patch_values = self.in_channels * WHITEN_KERNEL**2
        if self.stem_width % 2 or self.stem_width > 2 * patch_values:
            raise ValueError(
                f"stem_width must be even and at most {2 * patch_values} (two filters, + and -, per whitened "
                f"direction of a {WHITEN_KERNEL}x{WHITEN_KERNEL}x{self.in_channels} patch), got {self.stem_width}"
            )
        if self.family != FAMILY:
            raise ValueError(
                f"unknown network family {self.family!r}; this version of fmw builds {FAMILY!r} "
                "(checkpoints of the earlier 'fmw-resnet' family must be retrained)"
            )

    @property
    def minimum_input_size(self) -> int:
        """Smallest image side the network accepts: the whitening conv takes one pixel, then
        every block halves the size."""
        return 2 ** len(self.widths) + WHITEN_KERNEL - 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        if not isinstance(data, dict):
            raise ValueError(f"architecture config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown architecture config keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ValueError(f"malformed architecture config: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> NetConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"architecture config is not valid JSON: {error}") from None
        return cls.from_dict(data)


class PatchWhitening(nn.Conv2d):
    """A 2x2 convolution whose filters whiten image patches: for the leading ``out // 2``
    eigenvectors ``v`` of the patch covariance of the training images, the filters
    ``v / sqrt(lambda + eps)`` and their negatives (so the following GELU keeps both signs).
    Its weight is frozen during training; its bias trains (airbench93: for the first epochs).
    """

    bias: torch.Tensor  # always built with a bias (``nn.Conv2d`` types it as optional)

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, WHITEN_KERNEL, padding=0, bias=True)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the filters from normalised float ``images`` (N, C, H, W) and zero the bias."""
        k = self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.in_channels * k * k).double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        keep = self.out_channels // 2
        order = torch.arange(len(eigenvalues) - 1, len(eigenvalues) - 1 - keep, -1)
        filters = eigenvectors[:, order].T / torch.sqrt(eigenvalues[order] + eps).unsqueeze(1)
        filters = filters.reshape(keep, self.in_channels, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))
        self.bias.zero_()


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 'same' convolution, identity-initialised on its first ``in_channels`` outputs (a
    Dirac kernel), as airbench does to give a plain network an implicit residual path at start."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a frozen unit weight (only the bias trains), eps 1e-12, momentum 0.4."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


class WeightedBlock(nn.Module):
    """conv - maxpool - BN - GELU - conv - BN - GELU, then the weighting layer on the block's
    output: ``y = weighting(gelu(bn(conv(gelu(bn(pool(conv(x))))))))``."""

    def __init__(self, in_channels: int, out_channels: int, weighting: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = batch_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = batch_norm(out_channels)
        self.activation = nn.GELU()
        self.weighting = create_weighting(weighting, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        x = self.activation(self.norm2(self.conv2(x)))
        return self.weighting(x)


class FMWNet(nn.Module):
    """Patch-whitening stem, one ``WeightedBlock`` per width, global max pool, linear classifier
    whose output is multiplied by a fixed ``logit_scale`` (1/9, as airbench93).

    Fully convolutional: any input of at least ``config.minimum_input_size`` pixels per side works.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(PatchWhitening(config.in_channels, config.stem_width), nn.GELU())
        stages = []
        in_channels = config.stem_width
        for width in config.widths:
            stages.append(WeightedBlock(in_channels, width, config.weighting))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(in_channels, config.num_classes, bias=False)

    @property
    def whitening(self) -> PatchWhitening:
        return cast(PatchWhitening, self.stem[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.classifier(features) * self.config.logit_scale


def build_model(config: NetConfig | None = None, **overrides: Any) -> FMWNet:
    """Build an ``FMWNet`` from a config, or from keyword overrides of the default config."""
    if config is None:
        config = NetConfig(**overrides)
    elif overrides:
        config = NetConfig.from_dict({**config.to_dict(), **overrides})
    return FMWNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_multiply_adds(model: nn.Module, input_size: tuple[int, int] = (32, 32), in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass for one image, counted with torch's FLOP counter
    (which reports 2 FLOPs per multiply-add for convolutions, linear layers and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_channels, *input_size, device=model_device(model))
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)
