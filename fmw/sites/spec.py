"""What a weighting site is: its qualified name, kind, module, and the submodules whose outputs are
its gates (``GateSpec``), in the order the gates are applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


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
