"""Adapters that make foreign weighting modules probe sites: torchvision's
``ops.SqueezeExcitation`` and, when timm is installed, timm's SE, EffectiveSE, ECA and CBAM."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation as TorchvisionSqueezeExcitation

from fmw.sites import GateSpec

__all__ = ["describe_foreign_site"]


def _channel_gate_from_sequence(gate: torch.Tensor) -> torch.Tensor:
    """timm's ECA gates are (N, 1, C); the contract's channel gate is (N, C, 1, 1)."""
    return gate.reshape(gate.shape[0], -1, 1, 1)


def _timm_adapters() -> list[tuple[type, str, callable]]:
    try:
        from timm.layers import cbam, eca, squeeze_excite
    except ImportError:
        return []
    adapters = [
        (squeeze_excite.SEModule, "channel", lambda m: {"channel": GateSpec(m.gate)}),
        (squeeze_excite.EffectiveSEModule, "channel", lambda m: {"channel": GateSpec(m.gate)}),
        (eca.EcaModule, "eca", lambda m: {"channel": GateSpec(m.gate, _channel_gate_from_sequence)}),
        (eca.CecaModule, "eca", lambda m: {"channel": GateSpec(m.gate, _channel_gate_from_sequence)}),
        (
            cbam.CbamModule,
            "cbam",
            lambda m: {"channel": GateSpec(m.channel.gate), "spatial": GateSpec(m.spatial.gate)},
        ),
        (
            cbam.LightCbamModule,
            "cbam",
            lambda m: {"channel": GateSpec(m.channel.gate), "spatial": GateSpec(m.spatial.gate)},
        ),
    ]
    return adapters


_ADAPTERS: list | None = None


def _adapters() -> list:
    global _ADAPTERS
    if _ADAPTERS is None:
        _ADAPTERS = [
            (TorchvisionSqueezeExcitation, "channel", lambda m: {"channel": GateSpec(m.scale_activation)}),
            *_timm_adapters(),
        ]
    return _ADAPTERS


def describe_foreign_site(module: nn.Module) -> tuple[str, dict[str, GateSpec]] | None:
    for cls, kind, gates in _adapters():
        if type(module) is cls:
            return kind, gates(module)
    return None
