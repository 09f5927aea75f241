"""A model's input and output as the model has them: ``Inputs`` is one call's positional and keyword
arguments (a batch tensor, a list of image tensors, anything a forward takes); ``map_tensors`` and
``describe`` walk any output (tensors, lists, tuples, dicts, nested) without knowing its task."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Inputs", "ModelInputs", "as_inputs", "describe", "map_tensors", "tensors_of"]


def map_tensors(value: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``function`` applied to every tensor in it, through lists, tuples (named ones
    included) and mappings (their type kept: an ``OrderedDict`` stays one); anything else as it is."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, Mapping):
        mapped = [(key, map_tensors(item, function)) for key, item in value.items()]
        return type(value)(mapped) if isinstance(value, dict) else dict(mapped)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(item, function) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(item, function) for item in value)
    return value


def tensors_of(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value``, in the order ``map_tensors`` visits them."""
    found: list[torch.Tensor] = []

    def collect(tensor: torch.Tensor) -> torch.Tensor:
        found.append(tensor)
        return tensor

    map_tensors(value, collect)
    return found


def describe(value: Any, depth: int = 0) -> str:
    """The structure and shapes of ``value`` in a line, for messages and the "other" task:
    ``tensor (2, 10)``, ``list of 3 [tensor (1, 3, 8, 8), ...]``, ``OrderedDict {out: tensor (...)}``."""
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if depth >= 3:
        return type(value).__name__
    if isinstance(value, Mapping):
        items = ", ".join(f"{key}: {describe(item, depth + 1)}" for key, item in list(value.items())[:6])
        more = ", ..." if len(value) > 6 else ""
        return f"{type(value).__name__} {{{items}{more}}}"
    if isinstance(value, (list, tuple)):
        items = ", ".join(describe(item, depth + 1) for item in value[:3])
        more = ", ..." if len(value) > 3 else ""
        return f"{type(value).__name__} of {len(value)} [{items}{more}]"
    return type(value).__name__


@dataclass(init=False)
class Inputs:
    """One call of a model: ``Inputs(*args, **kwargs)`` runs ``model(*args, **kwargs)``. Tensors in
    the arguments (also inside lists, tuples and dicts) move to the model's device; anything else is
    passed as it is. ``fmw.probe(model, Inputs(images, targets=None))`` probes such a call."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def to(self, device: torch.device | str) -> Inputs:
        device = torch.device(device)
        if all(tensor.device == device for tensor in tensors_of((self.args, self.kwargs))):
            return self

        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device)

        return Inputs(*map_tensors(self.args, move), **map_tensors(self.kwargs, move))

    def call(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def describe(self) -> str:
        parts = [describe(arg) for arg in self.args] + [f"{key}={describe(arg)}" for key, arg in self.kwargs.items()]
        return f"({', '.join(parts)})"


ModelInputs = torch.Tensor | Sequence[torch.Tensor] | Inputs
"""What a probe takes: a batch (N, C, H, W), a list of image tensors (torchvision's detectors take
(C, H, W) images of any size), or ``Inputs`` for any other call."""

INPUT_FORMS = (
    "a 4-D tensor (N, C, H, W), a list of image tensors (C, H, W) as torchvision's detectors take them, "
    "or fmw.Inputs(*args, **kwargs) for any other call"
)


def as_inputs(inputs: object) -> Inputs:
    """``inputs`` as one call: a batch tensor (which must be 4-D) or a non-empty list of tensors is
    the single positional argument; ``Inputs`` is taken as it is; anything else is a ``ValueError``."""
    if isinstance(inputs, Inputs):
        return inputs
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 4:
            raise ValueError(f"images must be a 4-D tensor (N, C, H, W), got {tuple(inputs.shape)}; give {INPUT_FORMS}")
        return Inputs(inputs)
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(item, torch.Tensor) for item in inputs):
        return Inputs(list(inputs))
    raise ValueError(f"images must be {INPUT_FORMS}; got {describe(inputs)}")
