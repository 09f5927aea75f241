"""Class knowledge: torchvision's and timm's weighting modules, with the kind each is and the
submodules whose outputs are its gates."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation as TorchvisionSqueezeExcitation

from fmw.sites.spec import GateSpec

GateAdapter = tuple[type, str, Callable[[nn.Module], dict[str, GateSpec]]]


def _channel_gate_from_sequence(gate: torch.Tensor) -> torch.Tensor:
    """timm's ECA gates are (N, 1, C); the contract's channel gate is (N, C, 1, 1)."""
    return gate.reshape(gate.shape[0], -1, 1, 1)


def _single_gate(module: nn.Module) -> dict[str, GateSpec]:
    return {"channel": GateSpec(module.gate)}


def _timm_adapters() -> list[GateAdapter]:
    """timm's weighting modules whose gates come from a ``.gate`` submodule. LightCbamModule is left
    out: its channel gate is a functional sigmoid that no hook can read or replace."""
    try:
        from timm.layers import cbam, eca, squeeze_excite
        from timm.models import _efficientnet_blocks
    except ImportError:
        return []

    def eca_gate(module: nn.Module) -> dict[str, GateSpec]:
        return {"channel": GateSpec(module.gate, _channel_gate_from_sequence)}

    def cbam_gates(module: nn.Module) -> dict[str, GateSpec]:
        return {"channel": GateSpec(module.channel.gate), "spatial": GateSpec(module.spatial.gate)}

    return [
        (squeeze_excite.SEModule, "channel", _single_gate),
        (squeeze_excite.EffectiveSEModule, "channel", _single_gate),
        (_efficientnet_blocks.SqueezeExcite, "channel", _single_gate),
        (eca.EcaModule, "eca", eca_gate),
        (eca.CecaModule, "eca", eca_gate),
        (cbam.CbamModule, "cbam", cbam_gates),
    ]


@cache
def _adapters() -> list[GateAdapter]:
    return [
        (TorchvisionSqueezeExcitation, "channel", lambda m: {"channel": GateSpec(m.scale_activation)}),
        *_timm_adapters(),
    ]


def describe_foreign_site(module: nn.Module) -> tuple[str, dict[str, GateSpec]] | None:
    """Kind and gates of a torchvision or timm weighting module, or None for any other module."""
    for cls, kind, gates in _adapters():
        if type(module) is cls:
            return kind, gates(module)
    return None
