"""What a weighting site is: the module, its kind, and the submodules whose outputs are its
gates; ``find_sites`` lists them for fmw layers and for the foreign modules ``fmw.zoo`` adapts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fmw.weighting import WeightingLayer

__all__ = ["GateSpec", "SiteSpec", "find_sites"]


@dataclass(frozen=True)
class GateSpec:
    """A module whose output is a gate; ``to_standard`` reshapes that output to the contract's
    (N, C, 1, 1) or (N, 1, H, W) when the module produces another layout (e.g. timm's ECA)."""

    module: nn.Module
    to_standard: Callable[[torch.Tensor], torch.Tensor] | None = None

    def standard(self, gate: torch.Tensor) -> torch.Tensor:
        return self.to_standard(gate) if self.to_standard is not None else gate


@dataclass(frozen=True)
class SiteSpec:
    """One weighting site of a model: qualified name, kind, module, gates in application order."""

    name: str
    kind: str
    module: nn.Module
    gates: dict[str, GateSpec]


def describe_site(module: nn.Module) -> tuple[str, dict[str, GateSpec]] | None:
    """Kind and gates of ``module`` if it is a weighting layer fmw understands, else None."""
    if isinstance(module, WeightingLayer):
        return module.kind, {stage: GateSpec(gate) for stage, gate in module.gate_modules().items()}
    from fmw.zoo import describe_foreign_site

    return describe_foreign_site(module)


def find_sites(model: nn.Module) -> list[SiteSpec]:
    """Every weighting site of ``model`` in registration order (for the fmw family and
    torchvision's models this is also forward order; ``probe`` reports true forward order).
    Modules nested inside a site are part of it, not sites of their own."""
    sites: list[SiteSpec] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        described = describe_site(module)
        if described is not None:
            kind, gates = described
            sites.append(SiteSpec(name=name, kind=kind, module=module, gates=gates))
            inside.append(name)
    return sites
