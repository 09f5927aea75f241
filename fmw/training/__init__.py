"""Training the fmw family: the recipe and loop (``trainer``) and the optional Muon optimiser (``optim``)."""

from __future__ import annotations

from fmw.training.trainer import Recipe, train

__all__ = ["Recipe", "train"]
