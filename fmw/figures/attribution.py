"""Figures of attributions: an attribution map over the image, rows of attributions with the
weighting on and off, and what switching the weighting off does to the predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmw.figures.sites import spatial_overlay_figure
from fmw.figures.style import MAPS_COLORSCALE, TIGHT_MARGIN, symmetric_limit


def attribution_overlay_figure(
    image: np.ndarray,
    attribution: np.ndarray,
    *,
    opacity: float = 0.6,
    title: str = "attribution",
    height: int = 320,
) -> go.Figure:
    """An attribution map (h, w) stretched over ``image`` (H, W, 3 uint8), on a diverging colour
    scale symmetric around 0 (red: towards the target class, blue: against)."""
    limit = symmetric_limit(attribution)
    figure = spatial_overlay_figure(image, attribution, opacity=opacity, title=title, height=height)
    figure.update_traces(
        zmin=-limit,
        zmax=limit,
        colorscale=MAPS_COLORSCALE,
        hovertemplate="row %{customdata[0]}, column %{customdata[1]}<br>attribution %{z:.4g}<extra></extra>",
        selector={"type": "heatmap"},
    )
    return figure


def attribution_rows_figure(
    maps: np.ndarray, labels: Sequence[str], *, columns: int = 4, title: str = "", height_per_row: int = 220
) -> go.Figure:
    """One attribution map (H, W) per label (e.g. weighting on, each site off, all off) on one
    shared colour range, so a change between panels is a change of the attribution."""
    count = len(labels)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=list(labels), horizontal_spacing=0.02)
    for position, (label, values) in enumerate(zip(labels, maps)):
        figure.add_trace(
            go.Heatmap(
                z=values.astype(np.float32),
                coloraxis="coloraxis",
                name=label,
                hovertemplate="row %{y}, column %{x}<br>attribution %{z:.4g}<extra>%{fullData.name}</extra>",
            ),
            row=position // columns + 1,
            col=position % columns + 1,
        )
    limit = symmetric_limit(maps)
    figure.update_layout(
        title=title,
        height=rows * height_per_row + 60,
        coloraxis={"colorscale": MAPS_COLORSCALE, "cmin": -limit, "cmax": limit, "colorbar": {"thickness": 10}},
        margin=TIGHT_MARGIN,
    )
    figure.update_xaxes(showticklabels=False, scaleanchor="y", constrain="domain")
    figure.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain")
    return figure


def weighting_off_figure(
    labels: Sequence[str],
    target_probability: Sequence[float],
    predicted: Sequence[str],
    *,
    target: str,
    title: str = "switching weighting off",
    height: int = 300,
) -> go.Figure:
    """Probability of ``target`` per row (weighting on, each site off, all off), the predicted
    class written on each bar; rows whose prediction differs from the first are red."""
    colours = ["#4c72b0" if name == predicted[0] else "#c44e52" for name in predicted]
    figure = go.Figure(
        go.Bar(
            x=np.asarray(target_probability, dtype=np.float32),
            y=list(labels),
            orientation="h",
            text=[f"predicts {name}" for name in predicted],
            textposition="auto",
            marker_color=colours,
            hovertemplate="%{y}<br>p(" + target + ") = %{x:.4f}<br>%{text}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=height,
        margin=TIGHT_MARGIN,
        xaxis={"range": [0, 1], "title": f"probability of {target}"},
        yaxis_autorange="reversed",
    )
    return figure
