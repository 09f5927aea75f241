"""Figures of gate statistics: gate histograms and per-channel statistics over a batch, class x
channel heatmaps of mean gates, and class specificity by depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmw.figures.style import GATE_COLORSCALE, STAGE_COLOURS, TIGHT_MARGIN

AXIS_NAMES = {"C": "channel", "H": "row", "W": "column"}


def gate_histogram_figure(
    gate_values: dict[str, np.ndarray], *, title: str = "gate values", height: int = 280
) -> go.Figure:
    """Distribution of gate values, one histogram trace per stage by name ("channel", "coord_h", ...)."""
    figure = go.Figure(
        [
            go.Histogram(
                x=values.astype(np.float32),
                name=f"{stage} gate",
                nbinsx=40,
                opacity=0.75,
                marker_color=STAGE_COLOURS.get(stage),
            )
            for stage, values in gate_values.items()
        ]
    )
    figure.update_layout(title=title, height=height, barmode="overlay", margin=TIGHT_MARGIN, xaxis_title="gate value")
    return figure


def channel_statistics_figure(
    energy_ratio: np.ndarray,
    gate_mean: np.ndarray | None = None,
    gate_std: np.ndarray | None = None,
    *,
    title: str = "per channel",
    height: int = 420,
) -> go.Figure:
    """Per channel: the mean channel gate with its spread (when the site has one) and the mean
    energy ratio after/before on a log axis (1 = unchanged)."""
    rows = 2 if gate_mean is not None else 1
    titles = ("mean channel gate ± std", "energy after / before") if rows == 2 else ("energy after / before",)
    figure = make_subplots(rows=rows, cols=1, subplot_titles=titles, vertical_spacing=0.18)
    channels = np.arange(energy_ratio.size)
    if gate_mean is not None:
        figure.add_trace(
            go.Bar(
                x=channels,
                y=gate_mean.astype(np.float32),
                error_y=None if gate_std is None else {"type": "data", "array": gate_std.astype(np.float32)},
                name="mean gate",
                marker_color=STAGE_COLOURS["channel"],
                hovertemplate="channel %{x}<br>mean gate %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    figure.add_trace(
        go.Bar(
            x=channels,
            y=energy_ratio.astype(np.float32),
            name="energy ratio",
            marker_color="#55a868",
            hovertemplate="channel %{x}<br>after/before %{y:.4g}<extra></extra>",
        ),
        row=rows,
        col=1,
    )
    figure.update_yaxes(type="log", row=rows, col=1)
    figure.update_xaxes(title_text="channel", row=rows, col=1)
    figure.update_layout(title=title, height=height, showlegend=False, bargap=0.05, margin={**TIGHT_MARGIN, "t": 60})
    return figure


def class_gate_heatmap_figure(
    class_mean: np.ndarray,
    class_names: Sequence[str],
    *,
    stage: str = "channel",
    shape: tuple[int, ...] | None = None,
    axes: str | None = None,
    title: str = "",
    height: int | None = None,
) -> go.Figure:
    """Class x D mean gates as one heatmap, D running over the map's ``axes`` ("C": channels, "HW":
    positions of ``shape`` (h, w) row-major, "CH": channel then row, ...; default "HW" for a 2-D
    ``shape``, else "C"); hover names each axis's index and the deviation from the mean over classes."""
    values = class_mean.astype(np.float32)
    deviation = values - np.nanmean(values, axis=0, keepdims=True)
    shape = shape or (values.shape[1],)
    axes = axes or ("HW" if len(shape) == 2 else "C")
    names = [AXIS_NAMES[axis] for axis in axes]
    if len(axes) == 1:
        axis_title = names[0]
        hover = f"%{{y}}<br>{names[0]} %{{x}}"
        customdata = deviation[..., None]
    else:
        indices = np.unravel_index(np.arange(values.shape[1]), shape)
        axis_title = f"{' x '.join(names)} (row-major over {'x'.join(map(str, shape))})"
        where = ", ".join(f"{name} %{{customdata[{position + 1}]}}" for position, name in enumerate(names))
        hover = f"%{{y}}<br>position %{{x}} ({where})"
        planes = [np.broadcast_to(index.astype(np.float32), values.shape) for index in indices]
        customdata = np.stack([deviation, *planes], axis=-1)
    figure = go.Figure(
        go.Heatmap(
            z=values,
            y=list(class_names),
            customdata=customdata,
            colorscale=GATE_COLORSCALE,
            hovertemplate=hover + "<br>mean gate %{z:.4g}<br>vs all classes %{customdata[0]:+.4g}<extra></extra>",
            colorbar={"thickness": 10},
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
        xaxis={"title": "relative depth (0 = first site, 1 = last)", "range": [-0.05, 1.05]},
        yaxis={"title": "class specificity", "rangemode": "tozero"},
    )
    return figure
