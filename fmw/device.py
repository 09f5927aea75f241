"""Device choice for every fmw entry point: cuda, then mps, then cpu, unless an argument or
the ``FMW_DEVICE`` environment variable says otherwise."""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["ENVIRONMENT_VARIABLE", "available_devices", "model_device", "select_device"]

ENVIRONMENT_VARIABLE = "FMW_DEVICE"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Device types usable here, best first; "cpu" is always last."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def select_device(preference: str | torch.device | None = None) -> torch.device:
    """Pick the device: ``preference`` if given, else ``$FMW_DEVICE``, else the best available.

    "auto" (or empty) means the best available. An explicit device that is not usable here
    raises ``ValueError`` naming what is available, rather than failing later inside a kernel.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    choice = (preference or os.environ.get(ENVIRONMENT_VARIABLE, "") or "auto").strip().lower()
    usable = available_devices()
    if choice == "auto":
        return torch.device(usable[0])
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {choice!r}; use one of: auto, {', '.join(usable)} (or e.g. cuda:1)") from None
    if device.type not in usable:
        source = "argument" if preference else f"${ENVIRONMENT_VARIABLE}"
        raise ValueError(
            f"device {choice!r} (from the {source}) is not available on this machine; "
            f"available: {', '.join(usable)}. Use 'auto' to pick the best one."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {choice!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or, with none, first buffer), in the order
    ``model.parameters()`` gives them; the CPU for a model with neither. A plain walk over the
    modules, stopping at the first module holding a tensor: ``parameters()``' generators cost
    tens of microseconds, which every probe of a small input pays."""
    for registry in ("_parameters", "_buffers"):
        pending = [model]
        while pending:
            module = pending.pop()
            for tensor in getattr(module, registry).values():
                if tensor is not None:
                    return tensor.device
            pending.extend(reversed([child for child in module._modules.values() if child is not None]))
    return torch.device("cpu")
