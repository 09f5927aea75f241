"""Networks: the fmw family (``FMWNet``, built from a ``NetConfig``, and its checkpoints' metadata),
torchvision and timm models (``fmw.models.zoo``), one handle (``ModelHandle``) and one preprocessing
(``fmw.models.preprocessing``) for every model, and reading weights safely (``fmw.models.weights``)."""

from __future__ import annotations

from fmw.models.fmwnet import (
    FAMILY,
    FMWNet,
    NetConfig,
    PatchWhitening,
    WeightedBlock,
    build_model,
    count_multiply_adds,
    count_parameters,
)
from fmw.models.handle import ModelHandle
from fmw.models.metadata import CheckpointMetadata
from fmw.models.preprocessing import Preprocessing
from fmw.models.weights import compare_state_dicts, load_pickled_state_dict, read_safetensors
from fmw.models.zoo import (
    TIMM_MODELS,
    TORCHVISION_MODELS,
    build_timm_model,
    load_state_dict_upload,
    load_torchvision_model,
    timm_available,
)

__all__ = [
    "FAMILY",
    "TIMM_MODELS",
    "TORCHVISION_MODELS",
    "CheckpointMetadata",
    "FMWNet",
    "ModelHandle",
    "NetConfig",
    "PatchWhitening",
    "Preprocessing",
    "WeightedBlock",
    "build_model",
    "build_timm_model",
    "compare_state_dicts",
    "count_multiply_adds",
    "count_parameters",
    "load_pickled_state_dict",
    "load_state_dict_upload",
    "load_torchvision_model",
    "read_safetensors",
    "timm_available",
]
