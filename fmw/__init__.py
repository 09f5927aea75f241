"""fmw (feature-map weighting): find every weighting layer in a CNN (channel scaling, spatial
attention, squeeze-and-excitation, CBAM, ECA) and record what it did to the feature maps.

The entry points most users need are here; each sub-package documents the rest:

- ``inspect(model, images)``: a notebook view of any model on any images (``fmw.notebook``);
- ``probe(model, images)``: one forward pass recording every site's before, gates and after (and
  the output as the model returned it); ``Inputs(*args, **kwargs)`` for a model called otherwise;
- ``override_gates(model)``: a context in which gates are replaced (by 1: weighting off);
- ``load_checkpoint(path)``: an fmw ``.safetensors`` checkpoint, never unpickled;
- ``load_model(spec)``: a checkpoint, ``torchvision:NAME``, ``timm:NAME`` or ``file.py:FACTORY``,
  each as one ``ModelHandle`` (the module, its classes, preprocessing and task);
- ``WEIGHTING_LAYERS`` / ``create_weighting``: the layers fmw trains, by short name;
- ``FMWError``: the base of every error fmw raises on purpose.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fmw._version import __version__
from fmw.errors import CheckpointError, DataError, DecodeError, FMWError, ZooError

if TYPE_CHECKING:
    from fmw.io import load_checkpoint
    from fmw.io.model_spec import load_model
    from fmw.layers import WEIGHTING_LAYERS, create_weighting
    from fmw.models import ModelHandle
    from fmw.notebook import inspect
    from fmw.sites import Inputs, ProbeResult, SiteRecord, declare_site, find_sites, override_gates, probe

# Loaded on first use, so that ``import fmw.figures`` (plotly only) does not import torch.
_LAZY = {
    "inspect": "fmw.notebook",
    "load_model": "fmw.io.model_spec",
    "load_checkpoint": "fmw.io",
    "ModelHandle": "fmw.models",
    "WEIGHTING_LAYERS": "fmw.layers",
    "create_weighting": "fmw.layers",
    "Inputs": "fmw.sites",
    "ProbeResult": "fmw.sites",
    "SiteRecord": "fmw.sites",
    "declare_site": "fmw.sites",
    "find_sites": "fmw.sites",
    "override_gates": "fmw.sites",
    "probe": "fmw.sites",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fmw' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "WEIGHTING_LAYERS",
    "CheckpointError",
    "DataError",
    "DecodeError",
    "FMWError",
    "Inputs",
    "ModelHandle",
    "ProbeResult",
    "SiteRecord",
    "ZooError",
    "__version__",
    "create_weighting",
    "declare_site",
    "find_sites",
    "inspect",
    "load_checkpoint",
    "load_model",
    "override_gates",
    "probe",
]
