"""The registry: one short name per weighting layer class, and the factory that builds a layer
from its name and channel count."""

from __future__ import annotations

from fmw.layers.base import NoWeighting, WeightingLayer
from fmw.layers.cbam import CBAM
from fmw.layers.coordinate import CoordinateAttention
from fmw.layers.eca import EfficientChannelAttention
from fmw.layers.scale import ChannelScaling
from fmw.layers.simam import SimAM
from fmw.layers.spatial import SpatialAttention
from fmw.layers.squeeze_excitation import SqueezeExcitation

WEIGHTING_LAYERS: dict[str, type[WeightingLayer]] = {
    cls.kind: cls
    for cls in (
        NoWeighting,
        ChannelScaling,
        SpatialAttention,
        SqueezeExcitation,
        CBAM,
        EfficientChannelAttention,
        CoordinateAttention,
        SimAM,
    )
}


def create_weighting(kind: str, channels: int) -> WeightingLayer:
    """Build the weighting layer registered as ``kind`` for ``channels`` feature maps.

    Args:
        kind: a key of ``WEIGHTING_LAYERS`` (none, scale, spatial, channel, cbam, eca, coord, simam).
        channels: how many feature maps the layer weights (its input's C).

    Returns:
        A new ``WeightingLayer``: its forward takes a batch (N, C, H, W) and returns the weighted maps,
        the same shape.

    Raises:
        ValueError: for a kind that is not registered (the message lists the known ones).

    Examples:
        >>> import torch
        >>> from fmw import create_weighting
        >>> layer = create_weighting("eca", 64)
        >>> type(layer).__name__, tuple(layer(torch.rand(2, 64, 8, 8)).shape)
        ('EfficientChannelAttention', (2, 64, 8, 8))
    """
    try:
        cls = WEIGHTING_LAYERS[kind]
    except KeyError:
        known = ", ".join(WEIGHTING_LAYERS)
        raise ValueError(f"unknown weighting kind {kind!r}; expected one of: {known}") from None
    return cls(channels)
