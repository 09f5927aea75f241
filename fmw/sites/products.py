"""Which multiplications are feature-map weighting: a 4-D feature map (N, C, H, W), C > 1 and
H*W > 1, times a gate that broadcasts over the positions (a channel gate: (N|1, C, 1, 1), (C, 1, 1),
or such a tensor expanded to the map's shape) or over the channels (a spatial gate: (N|1, 1, H, W),
or expanded). A product whose both sides vary over channels and positions is not weighting.

The torch functions that compute a product (``x * g``, ``g * x``, ``torch.mul``, ``Tensor.mul``,
``x *= g``, ``x.mul_(g)``, ``torch.multiply``) reach a ``TorchFunctionMode`` as one of
``MULTIPLICATIONS``; ``IN_PLACE`` are those that write into their first argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = ["IN_PLACE", "MULTIPLICATIONS", "Layout", "WeightingProduct", "as_contract_gate", "weighting_product"]

Layout = Literal["channel", "spatial"]

IN_PLACE: frozenset[Callable[..., Any]] = frozenset({torch.Tensor.mul_, torch.Tensor.multiply_, torch.Tensor.__imul__})
MULTIPLICATIONS: frozenset[Callable[..., Any]] = IN_PLACE | frozenset(
    {
        torch.mul,
        torch.multiply,
        torch.Tensor.mul,
        torch.Tensor.multiply,
        torch.Tensor.__mul__,
        torch.Tensor.__rmul__,
    }
)


@dataclass(frozen=True)
class WeightingProduct:
    """A multiplication found to be weighting: the map's and the gate's positions among the
    call's two operands, the gate's layout, and whether the map is overwritten in place."""

    map_index: int
    gate_index: int
    layout: Layout
    in_place: bool


def _is_expanded(tensor: torch.Tensor, dims: tuple[int, ...]) -> bool:
    return all(tensor.stride(dim) == 0 or tensor.shape[dim] == 1 for dim in dims)


def gate_layout(feature_map: torch.Tensor, gate: torch.Tensor) -> Layout | None:
    """The layout of ``gate`` as a weighting of ``feature_map`` (N, C, H, W), or None."""
    n, c, h, w = feature_map.shape
    if gate.dim() == 3:
        if tuple(gate.shape) == (c, 1, 1):
            return "channel"
        return None
    if gate.dim() != 4 or gate.shape[0] not in (1, n):
        return None
    shape = tuple(gate.shape[1:])
    if shape == (c, 1, 1):
        return "channel"
    if shape == (1, h, w):
        return "spatial"
    if shape == (c, h, w):  # expanded to the map's shape, e.g. by expand_as: no data along the broadcast dims
        if _is_expanded(gate, (2, 3)):
            return "channel"
        if _is_expanded(gate, (1,)):
            return "spatial"
    return None


def _is_feature_map(tensor: object) -> bool:
    """A 4-D map (N, C, H, W), C > 1 and H*W > 1, with data along its channels and its positions
    (not itself a gate expanded to a map's shape). Written out, not with ``_is_expanded``: it runs on
    every multiplication of a watched pass."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
        return False
    _, c, h, w = tensor.shape
    if c < 2 or h * w < 2:
        return False
    _, channel_stride, row_stride, column_stride = tensor.stride()
    return channel_stride != 0 and not ((row_stride == 0 or h == 1) and (column_stride == 0 or w == 1))


def weighting_product(func: Callable[..., Any], args: tuple[Any, ...]) -> WeightingProduct | None:
    """``func(*args)`` as a weighting product, or None when it is some other multiplication."""
    if func not in MULTIPLICATIONS or len(args) < 2:
        return None
    in_place = func in IN_PLACE
    for map_index in (0,) if in_place else (0, 1):
        feature_map, gate = args[map_index], args[1 - map_index]
        if _is_feature_map(feature_map) and isinstance(gate, torch.Tensor):
            layout = gate_layout(feature_map, gate)
            if layout is not None:
                return WeightingProduct(map_index, 1 - map_index, layout, in_place)
    return None


def as_contract_gate(gate: torch.Tensor, feature_map: torch.Tensor, layout: Layout) -> torch.Tensor:
    """``gate`` in the probe contract's layout, (N, C, 1, 1) or (N, 1, H, W), N the map's batch."""
    n, c, h, w = feature_map.shape
    if gate.dim() == 4 and gate.shape[0] == n:  # already in the layout (the common case): as it is
        _, gate_channels, gate_rows, gate_columns = gate.shape
        if (layout == "channel" and gate_rows == gate_columns == 1) or (layout == "spatial" and gate_channels == 1):
            return gate
    if gate.dim() == 3:
        gate = gate.unsqueeze(0)
    gate = gate[:, :, :1, :1] if layout == "channel" else gate[:, :1]
    return gate.expand(n, c if layout == "channel" else 1, *((1, 1) if layout == "channel" else (h, w)))
