"""Class knowledge, kept to names: the kind fmw calls a site whose module is of a class it knows
(its own layers, torchvision's and timm's attention modules), and the paper behind each kind.
Finding sites never depends on it: discovery observes the products (``fmw.sites.observer``)."""

from __future__ import annotations

from functools import cache

from torch import nn

from fmw.layers import WeightingLayer

__all__ = ["KIND_PAPERS", "known_kind"]

KIND_PAPERS: dict[str, str] = {
    "scale": "a learned per-channel vector, as LayerScale (Touvron et al. 2021, arXiv:2103.17239) per feature map",
    "spatial": "a 1x1 convolution to one channel and a sigmoid: a map in [0, 1] over the positions",
    "channel": "squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507)",
    "cbam": "CBAM, channel then spatial attention (Woo et al. 2018, arXiv:1807.06521)",
    "eca": "ECA, a 1-D convolution across the pooled channels (Wang et al. 2020, arXiv:1910.03151)",
}


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
