"""The weighting layers fmw trains and ships, one short file per kind, and the registry that maps
a kind's short name to its class."""

from __future__ import annotations

from fmw.layers.base import NoWeighting, WeightingLayer
from fmw.layers.cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from fmw.layers.coordinate import CoordinateAttention
from fmw.layers.eca import EfficientChannelAttention, eca_kernel_size
from fmw.layers.registry import WEIGHTING_LAYERS, create_weighting
from fmw.layers.scale import ChannelScaling, LearnedScale
from fmw.layers.simam import SimAM
from fmw.layers.spatial import SpatialAttention
from fmw.layers.squeeze_excitation import SqueezeExcitation, squeeze_excitation_hidden

__all__ = [
    "CBAM",
    "WEIGHTING_LAYERS",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "ChannelScaling",
    "CoordinateAttention",
    "EfficientChannelAttention",
    "LearnedScale",
    "NoWeighting",
    "SimAM",
    "SpatialAttention",
    "SqueezeExcitation",
    "WeightingLayer",
    "create_weighting",
    "eca_kernel_size",
    "squeeze_excitation_hidden",
]
