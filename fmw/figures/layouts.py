"""How each gate layout of ``fmw.sites.layouts`` is drawn: one trace per stage (bars for a channel
gate, a map for a spatial gate, a channels x rows or channels x columns heat map for a coordinate
gate, a profile for a strip gate, a montage of per-channel maps for a full-size gate), its title,
and whether it is a picture (square pixels). A new layout adds one ``register_layout_figure`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from fmw.errors import FMWError
from fmw.figures.sites import _channel_gate_trace, _channel_indices, _spatial_gate_trace, channel_gate_figure, montage
from fmw.figures.style import GATE_COLORSCALE, STAGE_COLOURS

__all__ = ["LAYOUT_FIGURES", "LayoutFigure", "layout_figure", "register_layout_figure"]


@dataclass(frozen=True)
class LayoutFigure:
    """One layout's picture: ``title`` of a stage of it, ``trace`` (the image gate with the layout's
    axes, the trace's name -> one trace), ``picture`` (drawn with square pixels, first row on top),
    ``height`` (relative, in a column of stages) and ``figure``, the stage alone (default: its trace)."""

    name: str
    title: str
    trace: Callable[[np.ndarray, str], go.BaseTraceType]
    picture: bool
    height: float
    figure: Callable[[np.ndarray, str], go.Figure] | None = None


LAYOUT_FIGURES: dict[str, LayoutFigure] = {}


def register_layout_figure(
    name: str,
    title: str,
    trace: Callable[[np.ndarray, str], go.BaseTraceType],
    *,
    picture: bool,
    height: float,
    figure: Callable[[np.ndarray, str], go.Figure] | None = None,
) -> LayoutFigure:
    """Add how to draw layout ``name`` (a key of ``fmw.sites.layouts.LAYOUTS``)."""
    entry = LayoutFigure(name, title, trace, picture, height, figure)
    LAYOUT_FIGURES[name] = entry
    return entry


def layout_figure(layout: str) -> LayoutFigure:
    """How ``layout`` is drawn; an ``FMWError`` naming the drawable layouts otherwise."""
    try:
        return LAYOUT_FIGURES[layout]
    except KeyError:
        raise FMWError(
            f"no figure for gate layout {layout!r}; drawable: {', '.join(LAYOUT_FIGURES)}. "
            "Register one with fmw.figures.layouts.register_layout_figure"
        ) from None


def _upper(gate: np.ndarray) -> float:
    return max(1.0, float(np.nanmax(gate))) if gate.size else 1.0


def _coordinate_trace(position: str) -> Callable[[np.ndarray, str], go.Heatmap]:
    def trace(gate: np.ndarray, name: str) -> go.Heatmap:
        return go.Heatmap(
            z=gate.astype(np.float32),
            zmin=0.0,
            zmax=_upper(gate),
            colorscale=GATE_COLORSCALE,
            hovertemplate=f"channel %{{y}}, {position} %{{x}}<br>gate %{{z:.4g}}<extra></extra>",
            colorbar={"thickness": 10},
            name=name,
        )

    return trace


def _profile_trace(position: str) -> Callable[[np.ndarray, str], go.Scatter]:
    def trace(gate: np.ndarray, name: str) -> go.Scatter:
        return go.Scatter(
            x=np.arange(gate.size),
            y=gate.astype(np.float32),
            mode="lines+markers",
            marker_color=STAGE_COLOURS["spatial"],
            hovertemplate=f"{position} %{{x}}<br>gate %{{y:.4g}}<extra></extra>",
            name=name,
        )

    return trace


def _montage_trace(gate: np.ndarray, name: str) -> go.Heatmap:
    """A full-size gate (C, H, W) as one heatmap over the montage of its per-channel maps."""
    tiled = montage(gate)
    return go.Heatmap(
        z=tiled.values,
        customdata=_channel_indices(tiled.channels),
        zmin=0.0,
        zmax=_upper(gate),
        colorscale=GATE_COLORSCALE,
        hovertemplate="channel %{customdata}<br>gate %{z:.4g}<extra></extra>",
        hoverongaps=False,
        colorbar={"thickness": 10},
        name=name,
    )


register_layout_figure(
    "channel",
    "channel gate",
    lambda gate, name: _channel_gate_trace(gate, np.arange(gate.size)).update(name=name),
    picture=False,
    height=1.4,
    figure=lambda gate, title: channel_gate_figure(gate, title=title),
)
register_layout_figure(
    "spatial",
    "spatial gate (0 to 1)",
    lambda gate, name: _spatial_gate_trace(gate, "row %{y}, column %{x}<br>gate %{z:.4g}<extra></extra>", name=name),
    picture=True,
    height=2.0,
)
register_layout_figure("coord_h", "gate: channel × row", _coordinate_trace("row"), picture=False, height=2.0)
register_layout_figure("coord_w", "gate: channel × column", _coordinate_trace("column"), picture=False, height=2.0)
register_layout_figure("strip_h", "row gate", _profile_trace("row"), picture=False, height=1.2)
register_layout_figure("strip_w", "column gate", _profile_trace("column"), picture=False, height=1.2)
register_layout_figure("full", "gate maps, one per channel", _montage_trace, picture=True, height=3.0)
