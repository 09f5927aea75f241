"""Class knowledge, kept to names: the kind fmw calls a site whose module is of a class it knows
(its own layers, torchvision's and timm's attention modules; ``fmw.layers.descriptions`` has each
kind's formula and paper).
Finding sites never depends on it: discovery observes the products (``fmw.sites.observer``)."""

from __future__ import annotations

from functools import cache

from torch import nn

from fmw.layers import WeightingLayer

__all__ = ["known_kind"]


@cache
def _foreign_kinds() -> dict[type, str]:
    """torchvision's and timm's weighting classes (timm's only when it is installed)."""
    from torchvision.ops import SqueezeExcitation

    kinds: dict[type, str] = {SqueezeExcitation: "channel"}
    try:
        from timm.layers import cbam, eca, squeeze_excite
        from timm.models import _efficientnet_blocks
    except ImportError:
        return kinds
    kinds.update(
        {
            squeeze_excite.SEModule: "channel",
            squeeze_excite.EffectiveSEModule: "channel",
            _efficientnet_blocks.SqueezeExcite: "channel",
            eca.EcaModule: "eca",
            eca.CecaModule: "eca",
            cbam.CbamModule: "cbam",
            cbam.LightCbamModule: "cbam",
        }
    )
    return kinds


def known_kind(module: nn.Module) -> str | None:
    """The kind's name for a module of a class fmw knows, else None (the stages then name it)."""
    if isinstance(module, WeightingLayer):
        return module.kind
    return _foreign_kinds().get(type(module))
