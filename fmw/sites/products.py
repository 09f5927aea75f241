"""Which multiplications are feature-map weighting: a 4-D feature map x (N, C, H, W), C > 1 and
H*W > 1, times a gate that broadcasts to it and varies over at least one of its axes C, H, W (the
set of those axes is the gate's layout, ``fmw.sites.layouts``). A gate varying over all three
(``full``) is weighting unless it is a pointwise function of the map itself; that needs the gate's
lineage, which ``fmw.sites.observer`` judges while it discovers.

The torch functions that compute a product (``x * g``, ``g * x``, ``torch.mul``, ``Tensor.mul``,
``x *= g``, ``x.mul_(g)``, ``torch.multiply``; ``torch.einsum`` with a pattern that broadcasts one
operand over the other; ``torch.addcmul``, whose ``tensor1 * tensor2`` is the product) reach a
``TorchFunctionMode`` as one of ``MULTIPLICATIONS``, ``EINSUMS`` or ``ADDCMULS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fmw.sites.layouts import LAYOUTS, layout_for_axes

__all__ = [
    "ADDCMULS",
    "EINSUMS",
    "IN_PLACE",
    "MULTIPLICATIONS",
    "PRODUCT_FUNCTIONS",
    "Layout",
    "WeightingProduct",
    "as_contract_gate",
    "gate_layout",
    "is_feature_map",
    "stacked_as_map",
    "weighting_product",
]

Layout = str  # a key of ``fmw.sites.layouts.LAYOUTS``

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
EINSUMS: frozenset[Callable[..., Any]] = frozenset({torch.einsum, torch.functional.einsum})
ADDCMULS: frozenset[Callable[..., Any]] = frozenset({torch.addcmul, torch.Tensor.addcmul, torch.Tensor.addcmul_})
PRODUCT_FUNCTIONS = MULTIPLICATIONS | EINSUMS | ADDCMULS


@dataclass(frozen=True)
class WeightingProduct:
    """A multiplication found to be weighting: the map's and the gate's positions among the call's
    arguments, the gate's layout, whether the map is overwritten in place, for an einsum the gate's
    subscripts in the map's order (``gate_axes``: where each of the gate's dims goes), and
    ``stacked`` for K branch maps stacked as (N, K, C, H, W) with a (N, K, C, 1, 1) gate (selective
    kernel, split attention), recorded as one (N, K*C, H, W) map with a channel gate."""

    map_index: int
    gate_index: int
    layout: Layout
    in_place: bool
    gate_axes: tuple[int, ...] | None = None
    stacked: bool = False

    def broadcast_gate(self, gate: torch.Tensor) -> torch.Tensor:
        """The gate as a tensor that broadcasts against the map by torch's rules (an einsum's gate
        permuted and unsqueezed into the map's axes; any other gate as it is)."""
        if self.gate_axes is None:
            return gate
        order = sorted(range(len(self.gate_axes)), key=self.gate_axes.__getitem__)
        shape = [1, 1, 1, 1]
        permuted = gate.permute(order)
        for dim in order:
            shape[self.gate_axes[dim]] = gate.shape[dim]
        return permuted.reshape(shape)

    def operand_gate(self, broadcast: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A replacement gate given as a broadcastable tensor, in the shape of the call's own gate
        operand ``like`` (the inverse of ``broadcast_gate``)."""
        if self.gate_axes is None:
            return broadcast.expand(torch.broadcast_shapes(broadcast.shape, like.shape))
        order = sorted(range(len(self.gate_axes)), key=self.gate_axes.__getitem__)
        shape = [1, 1, 1, 1]
        for dim in order:
            shape[self.gate_axes[dim]] = like.shape[dim]
        permuted_shape = [like.shape[dim] for dim in order]
        inverse = sorted(range(len(order)), key=order.__getitem__)
        return broadcast.expand(shape).reshape(permuted_shape).permute(inverse)


def is_feature_map(tensor: object) -> bool:
    """A 4-D map (N, C, H, W), C > 1 and H*W > 1, with data along its channels and its positions
    (not itself a gate expanded to a map's shape). Written out: it runs on every multiplication of
    a watched pass."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
        return False
    _, c, h, w = tensor.shape
    if c < 2 or h * w < 2:
        return False
    _, channel_stride, row_stride, column_stride = tensor.stride()
    return channel_stride != 0 and not ((row_stride == 0 or h == 1) and (column_stride == 0 or w == 1))


def _stacked(feature_map: object, gate: object) -> bool:
    """K >= 2 branch maps (N, K, C, H, W) times a gate (N|1, K, C, 1, 1) varying over K and C."""
    if not (isinstance(feature_map, torch.Tensor) and isinstance(gate, torch.Tensor)):
        return False
    if feature_map.dim() != 5 or gate.dim() != 5:
        return False
    n, k, c, h, w = feature_map.shape
    return (
        k > 1
        and c > 1
        and h * w > 1
        and feature_map.stride(2) != 0
        and gate.shape[0] in (1, n)
        and tuple(gate.shape[1:]) == (k, c, 1, 1)
        and gate.stride(2) != 0
    )


def stacked_as_map(tensor: torch.Tensor) -> torch.Tensor:
    """Stacked branch maps (N, K, C, H, W), or their gate, as one (N, K*C, H, W) tensor."""
    n, k, c, h, w = tensor.shape
    return tensor.reshape(n, k * c, h, w)


def gate_layout(feature_map: torch.Tensor, gate: torch.Tensor) -> Layout | None:
    """The layout of ``gate`` as a weighting of ``feature_map`` (N, C, H, W), or None when it does
    not broadcast to the map or varies over none of C, H, W. An axis counts when the gate has the
    map's size there and data along it (not a stride-0 expansion)."""
    if gate.dim() > 4:
        return None
    shape = (1,) * (4 - gate.dim()) + tuple(gate.shape)
    strides = (0,) * (4 - gate.dim()) + tuple(gate.stride())
    if shape[0] not in (1, feature_map.shape[0]):
        return None
    axes = ""
    for dim, axis in ((1, "C"), (2, "H"), (3, "W")):
        size = shape[dim]
        if size == 1:
            continue
        if size != feature_map.shape[dim]:
            return None
        if strides[dim] != 0:
            axes += axis
    found = layout_for_axes(axes) if axes else None
    return found.name if found is not None else None


def _einsum_product(args: tuple[Any, ...]) -> WeightingProduct | None:
    """An einsum ``"nchw,nc->nchw"`` (either operand first, any letters): one operand a feature map
    whose subscripts are the output's, the other's subscripts distinct letters among them."""
    if len(args) == 2 and isinstance(args[1], (list, tuple)):
        args = (args[0], *args[1])
    if len(args) != 3 or not isinstance(args[0], str):
        return None
    equation = args[0].replace(" ", "")
    if "->" not in equation or "." in equation:
        return None
    inputs, output = equation.split("->")
    subscripts = inputs.split(",")
    if len(subscripts) != 2 or len(output) != 4 or len(set(output)) != 4:
        return None
    for map_position in (0, 1):
        feature_map, gate = args[1 + map_position], args[2 - map_position]
        map_letters, gate_letters = subscripts[map_position], subscripts[1 - map_position]
        if map_letters != output or not is_feature_map(feature_map) or not isinstance(gate, torch.Tensor):
            continue
        if len(set(gate_letters)) != len(gate_letters) or not set(gate_letters) <= set(output):
            continue
        product = WeightingProduct(
            1 + map_position, 2 - map_position, "", False, tuple(map(output.index, gate_letters))
        )
        layout = gate_layout(feature_map, product.broadcast_gate(gate))
        if layout is not None:
            return WeightingProduct(product.map_index, product.gate_index, layout, False, product.gate_axes)
    return None


# What ``weighting_product`` said of a multiplication of two tensors, by the function and the two
# operands' shapes and strides (all it looks at): a watched pass asks again for every product
_MULTIPLICATIONS_SEEN: dict[tuple[Any, ...], WeightingProduct | None] = {}


def weighting_product(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None
) -> WeightingProduct | None:
    """``func(*args, **kwargs)`` as a weighting product, or None when it is some other call."""
    if func in MULTIPLICATIONS and len(args) == 2 and not kwargs:
        first, second = args
        if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)):
            return _weighting_product(func, args, kwargs)
        key = (func, first.shape, first.stride(), second.shape, second.stride())
        try:
            return _MULTIPLICATIONS_SEEN[key]
        except KeyError:
            found = _weighting_product(func, args, kwargs)
            if len(_MULTIPLICATIONS_SEEN) >= 4096:
                _MULTIPLICATIONS_SEEN.clear()
            _MULTIPLICATIONS_SEEN[key] = found
            return found
    return _weighting_product(func, args, kwargs)


def _weighting_product(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None
) -> WeightingProduct | None:
    if func in MULTIPLICATIONS:
        if len(args) < 2 or kwargs:
            return None
        in_place = func in IN_PLACE
        positions: tuple[int, ...] = (0,) if in_place else (0, 1)
        others = {0: 1, 1: 0}
    elif func in ADDCMULS:
        if len(args) < 3 or (kwargs and set(kwargs) != {"value"}):
            return None
        in_place, positions, others = False, (1, 2), {1: 2, 2: 1}
    elif func in EINSUMS:
        return None if kwargs else _einsum_product(args)
    else:
        return None
    for map_index in positions:
        feature_map, gate = args[map_index], args[others[map_index]]
        if _stacked(feature_map, gate):
            return WeightingProduct(map_index, others[map_index], "channel", in_place, stacked=True)
        if is_feature_map(feature_map) and isinstance(gate, torch.Tensor):
            layout = gate_layout(feature_map, gate)
            if layout is not None:
                return WeightingProduct(map_index, others[map_index], layout, in_place)
    return None


def as_contract_gate(gate: torch.Tensor, feature_map: torch.Tensor, layout: Layout) -> torch.Tensor:
    """``gate`` (broadcastable to ``feature_map``) in its layout's contract shape: the map's batch N,
    the layout's axes at the map's sizes, 1 elsewhere (a view where it can be)."""
    contract = LAYOUTS[layout].contract_shape(feature_map.shape)
    if tuple(gate.shape) == contract:  # the common case: as it is
        return gate
    while gate.dim() < 4:
        gate = gate.unsqueeze(0)
    for dim in (1, 2, 3):
        if contract[dim] == 1 and gate.shape[dim] != 1:
            gate = gate.narrow(dim, 0, 1)
    return gate.expand(contract)
