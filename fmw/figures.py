"""Plotly figures for predictions, attributions, switching weighting off and dataset gate statistics:
numpy arrays in, figures out (no torch, no streamlit); maps and gates themselves are in ``fmw.viz``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmw.viz import GATE_COLORSCALE, MAPS_COLORSCALE, TIGHT_MARGIN, spatial_overlay_figure, symmetric_limit

__all__ = [
    "predictions_figure",
    "attribution_overlay_figure",
    "attribution_rows_figure",
    "weighting_off_figure",
    "class_gate_heatmap_figure",
    "specificity_figure",
]


def predictions_figure(
    class_names: Sequence[str], probabilities: Sequence[float], *, title: str = "top-5", height: int = 220
) -> go.Figure:
    """The top classes as horizontal bars, most probable on top, probabilities on [0, 1]."""
    figure = go.Figure(
        go.Bar(
            x=np.asarray(probabilities, dtype=np.float32),
            y=list(class_names),
            orientation="h",
            marker_color="#4c72b0",
            hovertemplate="%{y}<br>p = %{x:.4f}<extra></extra>",
        )
    )
    figure.update_layout(title=title, height=height, margin=TIGHT_MARGIN, xaxis_range=[0, 1], yaxis_autorange="reversed")
    return figure


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
        hovertemplate="attribution %{z:.4g}<extra></extra>",
        selector=dict(type="heatmap"),
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
        coloraxis=dict(colorscale=MAPS_COLORSCALE, cmin=-limit, cmax=limit, colorbar=dict(thickness=10)),
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
        xaxis=dict(range=[0, 1], title=f"probability of {target}"),
        yaxis_autorange="reversed",
    )
    return figure


def class_gate_heatmap_figure(
    class_mean: np.ndarray,
    class_names: Sequence[str],
    *,
    stage: str = "channel",
    shape: tuple[int, ...] | None = None,
    title: str = "",
    height: int | None = None,
) -> go.Figure:
    """Class x channel (or class x position, for a spatial stage of ``shape`` (h, w)) mean gates as
    one heatmap; hover shows the deviation from the mean over classes too."""
    values = class_mean.astype(np.float32)
    deviation = values - np.nanmean(values, axis=0, keepdims=True)
    if stage == "spatial" and shape is not None:
        rows, columns = np.divmod(np.arange(values.shape[1], dtype=np.float32), shape[1])
        axis_title = f"position (row-major over {shape[0]}x{shape[1]})"
        hover = "%{y}<br>position %{x} (row %{customdata[1]}, column %{customdata[2]})"
        customdata = np.stack(
            [deviation, np.broadcast_to(rows, values.shape), np.broadcast_to(columns, values.shape)], axis=-1
        )
    else:
        axis_title = "channel"
        hover = "%{y}<br>channel %{x}"
        customdata = deviation[..., None]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            y=list(class_names),
            customdata=customdata,
            colorscale=GATE_COLORSCALE,
            hovertemplate=hover + "<br>mean gate %{z:.4g}<br>vs all classes %{customdata[0]:+.4g}<extra></extra>",
            colorbar=dict(thickness=10),
        )
    )
    figure.update_layout(
        title=title or f"mean {stage} gate per class",
        height=height or max(220, 22 * len(class_names) + 90),
        margin=TIGHT_MARGIN,
        xaxis_title=axis_title,
        yaxis_autorange="reversed",
    )
    return figure


def specificity_figure(
    series: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
    *,
    title: str = "class specificity by depth",
    height: int = 320,
) -> go.Figure:
    """One line per model: (relative depths 0..1, specificities, site names) of its sites."""
    figure = go.Figure(
        [
            go.Scatter(
                x=np.asarray(depths, dtype=np.float64),
                y=np.asarray(values, dtype=np.float64),
                text=list(names),
                mode="lines+markers",
                name=label,
                hovertemplate="%{text}<br>depth %{x:.2f}<br>specificity %{y:.3f}<extra>%{fullData.name}</extra>",
            )
            for label, (depths, values, names) in series.items()
        ]
    )
    figure.update_layout(
        title=title,
        height=height,
        margin=TIGHT_MARGIN,
        xaxis=dict(title="relative depth (0 = first site, 1 = last)", range=[-0.05, 1.05]),
        yaxis=dict(title="class specificity", rangemode="tozero"),
    )
    return figure
