"""Sites declared on modules rather than found by observing products: a module whose weighting fmw
cannot see by computation (a gate applied by a fused kernel, outside Python, or through NumPy), or
one that applies no gate but should show as a site (fmw's own ``none`` layer, so that every network
of the family has the same sites). A declared module is recorded by a forward hook while a probe
runs: its first input as the map before, its output as the map after, and the gate its ``gate``
function returns, if any."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fmw.layers import NoWeighting

__all__ = ["Declaration", "GateFunction", "declaration", "declarations_version", "declare_site", "forget_site"]

GateFunction = Callable[[nn.Module, tuple[Any, ...], Any], torch.Tensor]


@dataclass(frozen=True)
class Declaration:
    """What is declared of a module: the ``kind`` its site shows, and a ``gate`` function taking
    (module, inputs, output) and returning the gate it applied to ``inputs[0]`` (broadcastable to
    it), or None for a site that shows its two sides only."""

    kind: str
    gate: GateFunction | None = None


_LOCK = threading.Lock()
_BY_MODULE: weakref.WeakKeyDictionary[nn.Module, Declaration] = weakref.WeakKeyDictionary()
_BY_CLASS: dict[type, Declaration] = {}
_VERSION = [0]  # bumped by every change, so that a model's index knows to look again


def declare_site(
    target: nn.Module | type[nn.Module], *, kind: str = "declared", gate: GateFunction | None = None
) -> None:
    """Declare ``target`` (one module, or every module of a class) a weighting site.

    Use it for a gate fmw cannot see by computation: its product is not a torch multiplication in
    Python (a fused or compiled kernel, NumPy), so discovery finds nothing there. While a probe
    runs, a declared module's first input is recorded as the map before, its output as the map
    after, and ``gate(module, inputs, output)``, when given, as its one gate (its layout read from
    its shape against the map, as for found gates). Declared gates are shown, not replaced:
    ``override_gates`` leaves a declared site as it is.

    Args:
        target: a module instance (declared for that instance, held weakly) or a module class
            (every instance of it and of its subclasses).
        kind: the kind the site shows (``"declared"`` by default).
        gate: a function of (module, inputs, output) returning the gate applied to ``inputs[0]``;
            None for a site without a gate.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fmw.sites import declare_site, probe
        >>> class FusedGate(nn.Module):
        ...     def forward(self, x):  # a product fmw cannot see: made outside torch
        ...         gate = x.mean(dim=(2, 3), keepdim=True).sigmoid()
        ...         return torch.from_numpy(x.numpy() * gate.numpy())
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), FusedGate()).eval()
        >>> declare_site(FusedGate, kind="channel", gate=lambda m, i, o: i[0].mean(dim=(2, 3), keepdim=True).sigmoid())
        >>> [(r.name, r.kind, [s.layout for s in r.stages]) for r in probe(model, torch.rand(1, 3, 8, 8)).sites]
        [('1', 'channel', ['channel'])]
    """
    if not (isinstance(target, nn.Module) or (isinstance(target, type) and issubclass(target, nn.Module))):
        raise TypeError(f"declare_site takes an nn.Module or an nn.Module class, not {type(target).__name__}")
    declared = Declaration(kind, gate)
    with _LOCK:
        if isinstance(target, nn.Module):
            _BY_MODULE[target] = declared
        else:
            _BY_CLASS[target] = declared
        _VERSION[0] += 1


def forget_site(target: nn.Module | type[nn.Module]) -> None:
    """Undo ``declare_site(target)`` (nothing happens when ``target`` was not declared)."""
    with _LOCK:
        if isinstance(target, nn.Module):
            _BY_MODULE.pop(target, None)
        else:
            _BY_CLASS.pop(target, None)
        _VERSION[0] += 1


def declaration(module: nn.Module) -> Declaration | None:
    """What is declared of ``module``: for the instance itself, else for its class or the nearest
    base class declared; None when nothing is."""
    declared = _BY_MODULE.get(module)
    if declared is not None or not _BY_CLASS:
        return declared
    for cls in type(module).__mro__:
        declared = _BY_CLASS.get(cls)
        if declared is not None:
            return declared
    return None


def declarations_version() -> int:
    """A number that changes whenever a declaration does."""
    return _VERSION[0]


# fmw's ``none`` layer applies no gate; declared, every network of the family has the same sites
declare_site(NoWeighting, kind="none")
