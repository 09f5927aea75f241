"""The fmw network family: one small residual CNN whose ``weighting=`` switch puts the same
kind of weighting layer at the same sites, plus its JSON-serialisable configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from fmw.weighting import WEIGHTING_LAYERS, create_weighting

__all__ = ["NetConfig", "WeightedResidualStage", "FMWNet", "build_model", "count_parameters", "count_multiply_adds"]


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one ``FMWNet``; ``to_json``/``from_json`` round-trip exactly."""

    weighting: str = "none"
    num_classes: int = 10
    in_channels: int = 3
    stem_width: int = 24
    widths: tuple[int, ...] = (48, 96, 192)
    logit_scale: float = 0.125
    family: str = "fmw-resnet"

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTING_LAYERS:
            raise ValueError(f"unknown weighting kind {self.weighting!r}; expected one of: {', '.join(WEIGHTING_LAYERS)}")
        def positive_integer(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if not isinstance(self.widths, (list, tuple)) or not self.widths or not all(map(positive_integer, self.widths)):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("num_classes", "in_channels", "stem_width"):
            if not positive_integer(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if isinstance(self.logit_scale, bool) or not isinstance(self.logit_scale, (int, float)) or not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be a positive number, got {self.logit_scale!r}")
        if self.family != "fmw-resnet":
            raise ValueError(f"unknown network family {self.family!r}; this version of fmw builds 'fmw-resnet'")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "NetConfig":
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
    def from_json(cls, text: str) -> "NetConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"architecture config is not valid JSON: {error}") from None
        return cls.from_dict(data)


def conv_bn(in_channels: int, out_channels: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)


class WeightedResidualStage(nn.Module):
    """One stage: conv-pool-BN-GELU to downsample, then a residual conv branch whose output is
    weighted before the addition (the SE-ResNet / CBAM placement):
    ``y = gelu(h + weighting(bn(conv(h))))`` with ``h`` the downsampled input.
    """

    def __init__(self, in_channels: int, out_channels: int, weighting: str) -> None:
        super().__init__()
        self.conv_in, self.bn_in = conv_bn(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.conv_branch, self.bn_branch = conv_bn(out_channels, out_channels)
        self.weighting = create_weighting(weighting, out_channels)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.bn_in(self.pool(self.conv_in(x))))
        branch = self.weighting(self.bn_branch(self.conv_branch(h)))
        return self.activation(h + branch)


class FMWNet(nn.Module):
    """Stem, one ``WeightedResidualStage`` per width, global max pool, linear classifier whose
    output is multiplied by a fixed ``logit_scale`` (as airbench does; it keeps the max-pooled
    logits small enough for a high learning rate from the first step).

    Fully convolutional: any input of at least ``2 ** len(widths)`` pixels per side works.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(*conv_bn(config.in_channels, config.stem_width), nn.GELU())
        stages = []
        in_channels = config.stem_width
        for width in config.widths:
            stages.append(WeightedResidualStage(in_channels, width, config.weighting))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(in_channels, config.num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.classifier(features) * self.config.logit_scale


def build_model(config: NetConfig | None = None, **overrides) -> FMWNet:
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
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        x = torch.zeros(1, in_channels, *input_size, device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)
