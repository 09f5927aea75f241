"""What discovery learns by watching every operation of one pass, and what later passes reuse
without watching: which operand of a full-size product is the map and whether its gate is a
pointwise function of that map (a self-gating activation), which products are an affine
normalisation (a static scale, then a static shift) or only feed another gate, and where a map that
is a rearranged view of another (permuted, reshaped into groups, split) sits in that one."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fmw.sites.layouts import layout_for_axes
from fmw.sites.products import is_feature_map

__all__ = ["Decision", "Lineage", "MappedFrame", "to_root"]

_ELEMENTWISE = frozenset(
    [
        "add",
        "radd",
        "iadd",
        "sub",
        "rsub",
        "isub",
        "mul",
        "rmul",
        "imul",
        "div",
        "truediv",
        "rtruediv",
        "itruediv",
        "true_divide",
        "neg",
        "pow",
        "rpow",
        "sigmoid",
        "tanh",
        "relu",
        "relu6",
        "hardtanh",
        "hardsigmoid",
        "hardswish",
        "silu",
        "mish",
        "softplus",
        "gelu",
        "elu",
        "selu",
        "celu",
        "leaky_relu",
        "clamp",
        "clamp_min",
        "clamp_max",
        "clip",
        "exp",
        "exp2",
        "expm1",
        "log",
        "log1p",
        "sqrt",
        "rsqrt",
        "abs",
        "square",
        "erf",
        "reciprocal",
        "minimum",
        "maximum",
        "to",
        "float",
        "half",
        "bfloat16",
        "double",
        "type_as",
        "contiguous",
        "clone",
    ]
)
_SHIFTS = frozenset({"add", "radd", "iadd", "sub", "rsub", "isub"})
_SHAPE_OPS = frozenset(
    [
        "view",
        "reshape",
        "permute",
        "transpose",
        "contiguous",
        "flatten",
        "unflatten",
        "chunk",
        "split",
        "split_with_sizes",
        "tensor_split",
        "narrow",
        "getitem",
        "unsqueeze",
        "squeeze",
        "swapaxes",
        "swapdims",
        "movedim",
        "view_as",
        "reshape_as",
        "unbind",
    ]
)
FRAME_LIMIT = 1 << 22  # the largest map (elements) whose rearrangements discovery follows
_NAMES: dict[Callable[..., Any], str] = {}


def _name(func: Callable[..., Any]) -> str:
    try:
        return _NAMES[func]
    except (KeyError, TypeError):
        pass
    name = getattr(func, "__name__", "")
    name = name[2:-2] if name.startswith("__") and name.endswith("__") else name.rstrip("_")
    try:
        if len(_NAMES) < 4096:
            _NAMES[func] = name
    except TypeError:
        pass
    return name


def _tensors(values: Iterable[Any]) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(item for item in value if isinstance(item, torch.Tensor))
    return found


@dataclass(frozen=True)
class MappedFrame:
    """A map that is a rearranged view of another (the root, of ``root_shape``): ``index`` (the
    map's shape) holds each element's flat position in the root; ``layout`` is the gate's layout in
    the root's frame; ``owner`` the module whose forward received the root as its first input."""

    root_shape: tuple[int, ...]
    index: torch.Tensor
    layout: str
    owner: str | None
    note: str | None


@dataclass(frozen=True)
class Decision:
    """What discovery decided about one product (by maker and ordinal), for the passes after it:
    ``weighting``, the operand that is the map, the frame it maps back to, the site's note, and
    whether the gate depends on the input (``static``: None where discovery did not see the gate)."""

    weighting: bool
    map_index: int
    frame: MappedFrame | None = None
    note: str | None = None
    static: bool | None = None


def to_root(tensor: torch.Tensor, frame: MappedFrame, base: torch.Tensor | None) -> torch.Tensor:
    """``tensor`` (broadcastable to the map) placed in the root's frame; where the map does not
    cover the root, ``base``'s values (or 1 without a base)."""
    out = (
        base.detach().clone()
        if base is not None
        else torch.ones(frame.root_shape, dtype=tensor.dtype, device=tensor.device)
    )
    index = frame.index.to(tensor.device)
    out.reshape(-1)[index.reshape(-1)] = tensor.detach().to(out.dtype).expand(index.shape).reshape(-1)
    return out


class Lineage:
    """Per-tensor facts gathered while every operation is watched (discovery only). Tensors are
    numbered in the order first seen (a number is never reused, unlike an ``id``)."""

    def __init__(self, static: Mapping[int, weakref.ref[torch.Tensor]]) -> None:
        self.static = static
        self.serials: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
        self.count = 0
        self.leaves: dict[int, frozenset[int]] = {}  # elementwise outputs: their non-static inputs' leaves
        self.taint: dict[int, frozenset[int]] = {}  # the products whose result flows into a tensor as a map
        self.frames: dict[int, tuple[weakref.ref[torch.Tensor], tuple[int, ...], torch.Tensor]] = {}
        self.static_after: dict[int, int] = {}  # the result of a product with a static gate -> product
        self.normalised: set[int] = set()
        self.fed_gates: set[int] = set()

    def serial(self, tensor: torch.Tensor) -> int:
        entry = self.serials.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        self.count += 1
        self.serials[id(tensor)] = (weakref.ref(tensor), self.count)
        return self.count

    def _static(self, tensor: torch.Tensor) -> bool:
        reference = self.static.get(id(tensor))
        return reference is not None and reference() is tensor

    def leaves_of(self, tensor: torch.Tensor) -> frozenset[int]:
        if self._static(tensor):
            return frozenset()
        serial = self.serial(tensor)
        return self.leaves.get(serial, frozenset({serial}))

    def observe(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], output: Any) -> None:
        """Note what an operation other than a weighting product did."""
        name = _name(func)
        inputs = _tensors(args)
        outputs = _tensors((output,))
        if not outputs:
            return
        taint: frozenset[int] = frozenset()
        for tensor in inputs:
            taint |= self.taint.get(self.serial(tensor), frozenset())
        elementwise = name in _ELEMENTWISE
        leaves = frozenset().union(*(self.leaves_of(t) for t in inputs)) if elementwise else frozenset()
        for tensor in outputs:
            serial = self.serial(tensor)
            if taint:
                self.taint[serial] = self.taint.get(serial, frozenset()) | taint
            if elementwise and not self._static(tensor):
                self.leaves[serial] = leaves
            else:
                self.leaves.pop(serial, None)
        if name in _SHIFTS and len(args) >= 2:
            self._shifted(args[0], args[1])
            self._shifted(args[1], args[0])
        if name in _SHAPE_OPS and inputs and args and args[0] is inputs[0]:
            self._rearranged(func, args, kwargs, output)

    def _shifted(self, product: object, shift: object) -> None:
        if not isinstance(product, torch.Tensor):
            return
        made_by = self.static_after.get(self.serial(product))
        if made_by is not None and (
            isinstance(shift, (int, float)) or (isinstance(shift, torch.Tensor) and self._static(shift))
        ):
            self.normalised.add(made_by)

    def _rearranged(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], output: Any
    ) -> None:
        source: torch.Tensor = args[0]
        entry = self.frames.get(self.serial(source))
        if entry is None:
            if not is_feature_map(source) or source.numel() > FRAME_LIMIT:
                return
            entry = (
                weakref.ref(source),
                tuple(source.shape),
                torch.arange(source.numel(), device=source.device).view(source.shape),
            )
        root, root_shape, index = entry
        try:
            mapped = func(index, *args[1:], **kwargs)
        except (RuntimeError, TypeError, IndexError, ValueError):
            return
        pairs = zip(_tensors((output,)), _tensors((mapped,)), strict=False)
        for tensor, tensor_index in pairs:
            if tensor is not source and tensor.shape == tensor_index.shape:
                self.frames[self.serial(tensor)] = (root, root_shape, tensor_index)

    def map_first(self, first: torch.Tensor, second: torch.Tensor) -> bool:
        """Of two full-size operands, whether the first is the map: the one made earlier."""
        return self.serial(first) <= self.serial(second)

    def self_gating(self, feature_map: torch.Tensor, gate: torch.Tensor) -> bool:
        """Whether ``gate`` is a pointwise function of ``feature_map``: its elementwise lineage ends
        in the map's own leaves and in static tensors only (so gate[i] depends on x[i] alone)."""
        gate_leaves = self.leaves_of(gate)
        return bool(gate_leaves) and gate_leaves <= self.leaves_of(feature_map)

    def product(
        self, index: int, feature_map: torch.Tensor, gate: torch.Tensor, static: bool, result: torch.Tensor
    ) -> None:
        """Note a weighting product ``index``: its result carries the map's lineage and its own."""
        gate_taint = self.taint.get(self.serial(gate), frozenset())
        self.fed_gates |= gate_taint
        serial = self.serial(result)
        self.taint[serial] = self.taint.get(self.serial(feature_map), frozenset()) | {index}
        self.leaves.pop(serial, None)
        if static:
            self.static_after[serial] = index
        frame = self.frames.get(self.serial(feature_map))
        if frame is not None and result is not feature_map:
            self.frames[serial] = frame

    def frame(
        self, feature_map: torch.Tensor, gate: torch.Tensor, owners: Iterable[tuple[str, Any]]
    ) -> tuple[MappedFrame | None, torch.Tensor | None]:
        """Where ``feature_map`` sits in the map it was rearranged from, with ``gate``'s layout in
        that frame, and that map itself (None, None for a map that is not a rearrangement)."""
        entry = self.frames.get(self.serial(feature_map))
        if entry is None or entry[2].shape != feature_map.shape:
            return None, None
        root_reference, root_shape, index = entry
        root = root_reference()
        owner = None
        for name, first in owners:
            if root is not None and first is root:
                owner = name
        if owner is None:  # only a map a module received is a frame to show gates in
            return None, None
        pattern = torch.arange(gate.numel(), device=index.device).view(gate.shape)
        placed = torch.full((math.prod(root_shape),), -1, dtype=torch.long, device=index.device)
        placed[index.reshape(-1)] = pattern.expand(feature_map.shape).reshape(-1)
        placed = placed.view(root_shape)
        axes = "".join(
            axis
            for dim, axis in ((1, "C"), (2, "H"), (3, "W"))
            if not torch.equal(placed, placed.narrow(dim, 0, 1).expand(root_shape))
        )
        layout = layout_for_axes(axes) if axes else None
        if layout is None:
            return None, None
        note = None
        if bool((placed < 0).any()):
            note = (
                f"gate applied to a {tuple(feature_map.shape)} part of the map; shown in the map's "
                f"{tuple(root_shape)} frame, as 1 where it does not apply"
            )
        return MappedFrame(root_shape, index, layout.name, owner, note), root

    def unmapped_note(self, feature_map: torch.Tensor) -> str | None:
        """The note for a map that is a view of another with another batch (a grouped frame) that
        fmw did not follow."""
        base = feature_map._base
        if base is None or base.dim() == 0 or base.shape[0] == feature_map.shape[0]:
            return None
        return (
            f"gate applied to a {tuple(feature_map.shape)} view of a {tuple(base.shape)} tensor that fmw "
            "could not map back; shown as applied"
        )

    def excluded(self, outputs: Iterable[torch.Tensor]) -> dict[int, str]:
        """After the pass: the products that are not weighting, with the reason."""
        reached: frozenset[int] = frozenset()
        for tensor in outputs:
            reached |= self.taint.get(self.serial(tensor), frozenset())
        found = dict.fromkeys(self.normalised, "an affine normalisation (a static scale, then a static shift)")
        for index in self.fed_gates - reached:
            found.setdefault(index, "only feeds another gate's computation")
        return found
