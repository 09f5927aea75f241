"""What a weighting site is: a module's qualified name, its kind, and its stages (the weighting
products made in it, in the order applied), each with its gate's layout and whether the gate
depends on the input. A stage is identified by the module whose forward made the product (its
maker) and the product's ordinal among that module's products in one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fmw.sites.products import Layout

__all__ = ["SiteSpec", "StageSpec"]


@dataclass(frozen=True)
class StageSpec:
    """One gate of a site: ``name`` ("channel", "spatial"; "channel_2" for a second channel gate),
    its layout, ``static`` when the gate does not depend on the input (a parameter, a buffer or
    something computed from them alone), and the product's maker and ordinal."""

    name: str
    layout: Layout
    static: bool
    maker: str
    ordinal: int


@dataclass(frozen=True)
class SiteSpec:
    """One weighting site of a model: qualified name ("" for the model itself), kind, module and
    stages in the order applied. A site with no stages is a placeholder (fmw's ``none`` layer)."""

    name: str
    kind: str
    module: nn.Module
    stages: tuple[StageSpec, ...]

    @property
    def gated(self) -> bool:
        return bool(self.stages)
