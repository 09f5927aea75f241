"""The error family: ``FMWError`` and one subclass per kind of input fmw refuses. Every message says
what was wrong and what to do, so a caller catches ``FMWError`` and prints it; anything else is a bug."""

from __future__ import annotations

__all__ = ["CheckpointError", "DataError", "DecodeError", "FMWError", "ZooError"]


class FMWError(Exception):
    """Base of every error fmw raises on purpose: bad input, a refused file, a missing resource."""


class CheckpointError(FMWError, ValueError):
    """A checkpoint or state dict was refused; the message names the problem and what to do."""


class DataError(FMWError, ValueError):
    """A dataset could not be read; the message says what was wrong and what to do."""


class DecodeError(FMWError, ValueError):
    """An upload could not be turned into an image; the message names the file and the reason."""


class ZooError(FMWError, RuntimeError):
    """A torchvision or timm model could not be built or its weights not obtained."""
