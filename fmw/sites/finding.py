"""Finding a model's weighting sites: ``find_sites`` walks the module tree and describes every fmw
layer and every foreign module ``fmw.sites.known`` knows."""

from __future__ import annotations

from torch import nn

from fmw.layers import WeightingLayer
from fmw.sites.known import describe_foreign_site
from fmw.sites.spec import GateSpec, SiteSpec


def describe_site(module: nn.Module) -> tuple[str, dict[str, GateSpec]] | None:
    """Kind and gates of ``module`` if it is a weighting layer fmw understands, else None."""
    if isinstance(module, WeightingLayer):
        return module.kind, {stage: GateSpec(gate) for stage, gate in module.gate_modules().items()}
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
