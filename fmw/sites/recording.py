"""Keeping what a probe records: tensors held by reference with their version counters or copied
at once (``Keeper``), which operations write into a tensor (``written``), and one observed product
with its tensors (``ObservedProduct``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fmw.sites.products import Layout

__all__ = ["Keeper", "ObservedProduct", "written"]


class Keeper:
    """Keeps the tensors a probe records. A map about to be overwritten by its own in-place product
    and every gate (small; often an expanded view) are copied at once; the rest are held by
    reference, with their version counters. When every operation is watched, an in-place
    operation on a held tensor copies it first (``preserve``); otherwise ``changed`` tells after
    the pass whether the model overwrote one (the probe then runs again, copying all). Without
    ``maps`` only the gates are kept: a map is recorded as a meta tensor, its shape and dtype."""

    def __init__(self, keep_on_device: bool, copy_all: bool = False, maps: bool = True) -> None:
        self.keep_on_device = keep_on_device
        self.copy_all = copy_all
        self.maps = maps
        self.held: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = {}
        self.preserved: dict[int, torch.Tensor] = {}
        self.stale = False  # a product's tensor was overwritten before its bookkeeping (``flush_products``)

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        return tensor.clone() if self.keep_on_device or tensor.is_cpu else tensor.to("cpu")

    def keep_map(self, tensor: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
        """A feature map to record: copied at once with ``copy`` (it is about to be overwritten),
        else held (``hold``); without ``maps``, its shape and dtype on the meta device."""
        if not self.maps:
            return torch.empty_like(tensor, device="meta")
        return self.copy(tensor) if copy else self.hold(tensor)

    def hold(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.copy_all or tensor.is_inference():  # an inference tensor has no version counter to check
            return self.copy(tensor)
        base = tensor._base if tensor._base is not None else tensor
        entry = self.held.get(id(base))
        if entry is not None and entry[0] is base and entry[1] is tensor:
            return entry[2]
        detached = tensor.detach()
        self.held[id(base)] = (base, tensor, detached, detached._version)  # the originals pin the ids
        return detached

    def preserve(self, target: object) -> bool:
        """Copy the held tensor ``target`` writes into, before it does; True if there was one."""
        if not isinstance(target, torch.Tensor) or not self.held:
            return False
        base = target._base if target._base is not None else target
        entry = self.held.get(id(base))
        if entry is None or entry[0] is not base:
            return False
        del self.held[id(base)]
        self.preserved[id(entry[2])] = self.copy(entry[2])
        return True

    @property
    def changed(self) -> bool:
        return self.stale or any(detached._version != version for _, _, detached, version in self.held.values())

    def settled(self, tensor: torch.Tensor) -> torch.Tensor:
        """A recorded tensor as it was when recorded, where the caller asked for it (the CPU unless
        ``keep_on_device``)."""
        preserved = self.preserved.get(id(tensor))
        if preserved is not None:
            return preserved
        return tensor if self.keep_on_device or tensor.is_meta else tensor.to("cpu")


def written(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """The tensor an operation writes into (``x.add_(y)``, ``x += y``, ``F.relu(x, inplace=True)``,
    ``torch.add(a, b, out=x)``), or None for one that writes a new tensor."""
    if kwargs:
        if "out" in kwargs:
            return kwargs["out"]
        if kwargs.get("inplace") is True:
            return args[0] if args else None
    try:
        in_place = _IN_PLACE_BY_FUNCTION.get(func)
    except TypeError:  # an unhashable callable: decide by its name every time
        return args[0] if args and _in_place_name(func) else None
    if in_place is None:
        in_place = _in_place_name(func)
        if len(_IN_PLACE_BY_FUNCTION) < 4096:
            _IN_PLACE_BY_FUNCTION[func] = in_place
    return args[0] if args and in_place else None


def _in_place_name(func: Callable[..., Any]) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_OPERATORS


_IN_PLACE_OPERATORS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__setitem__"})
_IN_PLACE_BY_FUNCTION: dict[Callable[..., Any], bool] = {}  # what _in_place_name said of each function seen


@dataclass
class ObservedProduct:
    """One weighting product of a pass, or (``layout`` None) a placeholder site's pass-through.
    ``note`` says where the gate is not shown as applied (a frame fmw could not map back)."""

    index: int
    layout: Layout | None
    static: bool
    maker: str
    ordinal: int
    root: int
    candidates: tuple[str, ...]
    before: torch.Tensor | None = None
    gate: torch.Tensor | None = None
    after: torch.Tensor | None = None
    note: str | None = None
