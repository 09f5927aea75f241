"""The figures' shared look: colour scales, hover text, margins, and the helpers that make image
axes and symmetric colour limits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

MAPS_COLORSCALE = "RdBu_r"


DIFFERENCE_COLORSCALE = "PiYG"


GATE_COLORSCALE = "Viridis"


MAP_HOVER = "channel %{customdata[0]}<br>value %{customdata[1]:.4g}<extra>%{fullData.name}</extra>"


TIGHT_MARGIN = {"l": 4, "r": 4, "t": 40, "b": 4}


STAGE_COLOURS = {"channel": "#4c72b0", "spatial": "#dd8452"}


def symmetric_limit(*arrays: np.ndarray) -> float:
    """The largest absolute finite value over ``arrays`` (1.0 when all are zero or empty)."""
    limit = max((float(np.nanmax(np.abs(a))) for a in arrays if a.size), default=0.0)
    return limit if math.isfinite(limit) and limit > 0 else 1.0


def _image_axes(figure: go.Figure, subplots: Sequence[int] = (1,)) -> None:
    """Square pixels, first row at the top, no ticks, for the numbered subplots' axes."""
    hidden = {"showticklabels": False, "showgrid": False, "zeroline": False, "constrain": "domain"}
    axes = {}
    for index in subplots:
        suffix = "" if index == 1 else str(index)
        axes[f"xaxis{suffix}"] = dict(hidden, scaleanchor=f"y{suffix}")
        axes[f"yaxis{suffix}"] = dict(hidden, autorange="reversed")
    figure.update_layout(axes)  # one update: each one validates the whole layout


def _coloraxis(colorscale: str, limit: float | None, title: str = "", **colorbar: object) -> dict[str, object]:
    axis: dict[str, object] = {
        "colorscale": colorscale,
        "colorbar": {"title": {"text": title}, "thickness": 10, **colorbar},
    }
    if limit is not None:
        axis.update(cmin=-limit, cmax=limit)
    return axis
