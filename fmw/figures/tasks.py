"""Figures of what a detector or a segmenter predicted: boxes, labels and scores drawn on the
image, and the predicted mask over the image with a legend giving each class's share of it; and
what switching weighting off changed in an output, as its task measures it, as a table."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from fmw.analysis.ablation import TaskWeightingOff
from fmw.models.tasks import Detection, Segmentation

PALETTE = qualitative.Dark24 + qualitative.Light24  # one colour per shown class, largest share first
IMAGE_MARGIN = {"l": 0, "r": 0, "t": 40, "b": 0}


def _image_figure(rgb: np.ndarray, title: str, height: int) -> go.Figure:
    figure = go.Figure(go.Image(z=rgb, hoverinfo="skip", name="image"))
    figure.update_layout(title=title, height=height, margin=IMAGE_MARGIN, template="plotly_white")
    figure.update_xaxes(visible=False, range=[0, rgb.shape[1]])
    figure.update_yaxes(visible=False, range=[rgb.shape[0], 0], scaleanchor="x")
    return figure


def detection_figure(
    rgb: np.ndarray, detection: Detection, *, title: str = "detections", height: int = 320
) -> go.Figure:
    """``rgb`` (H, W, 3 uint8), the image in the coordinates the boxes are in, with one outlined
    box per detection (a trace named by its label and score; hover for the corners), coloured by
    label."""
    figure = _image_figure(rgb, title, height)
    colours = {int(label): PALETTE[n % len(PALETTE)] for n, label in enumerate(dict.fromkeys(detection.labels))}
    for (x1, y1, x2, y2), label, name, score in zip(
        detection.boxes, detection.labels, detection.names, detection.scores, strict=True
    ):
        figure.add_trace(
            go.Scatter(
                x=[x1, x2, x2, x1, x1],
                y=[y1, y1, y2, y2, y1],
                mode="lines",
                line={"color": colours[int(label)], "width": 2},
                name=f"{name} {score:.0%}",
                showlegend=False,
                hovertemplate=f"{name} {score:.1%}<br>({x1:.0f}, {y1:.0f}) to ({x2:.0f}, {y2:.0f})<extra></extra>",
            )
        )
        figure.add_annotation(
            x=x1,
            y=y1,
            text=f"{name} {score:.0%}",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"size": 10, "color": "white"},
            bgcolor=colours[int(label)],
        )
    return figure


def segmentation_figure(
    rgb: np.ndarray, segmentation: Segmentation, *, opacity: float = 0.55, title: str = "mask", height: int = 320
) -> go.Figure:
    """The predicted ``segmentation.mask`` over ``rgb`` (the image the model saw; the mask is
    stretched over it), one colour per predicted class, and a legend entry per class with its share
    of the image (largest first)."""
    figure = _image_figure(rgb, title, height)
    ranks = {index: rank for rank, (index, _, _) in enumerate(segmentation.shares)}
    mask = segmentation.mask
    lookup = np.zeros(max(ranks) + 1, dtype=np.int16)
    lookup[list(ranks)] = list(ranks.values())
    ranked = lookup[mask]
    colours = [PALETTE[rank % len(PALETTE)] for rank in range(len(ranks))]
    steps = len(colours)
    scale = [[position / steps, colour] for rank, colour in enumerate(colours) for position in (rank, rank + 1)]
    figure.add_trace(
        go.Heatmap(
            z=ranked,
            x0=0.5 * rgb.shape[1] / mask.shape[1],
            dx=rgb.shape[1] / mask.shape[1],
            y0=0.5 * rgb.shape[0] / mask.shape[0],
            dy=rgb.shape[0] / mask.shape[0],
            zmin=-0.5,
            zmax=steps - 0.5,
            colorscale=scale,
            showscale=False,
            opacity=opacity,
            name="mask",
            hoverinfo="skip",
        )
    )
    for (_, name, share), colour in zip(segmentation.shares, colours, strict=True):
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"color": colour, "size": 10, "symbol": "square"},
                name=f"{name} {share:.1%}",
                showlegend=True,
            )
        )
    figure.update_layout(legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 0})
    return figure


def task_weighting_off_figure(comparison: TaskWeightingOff, *, title: str = "switching weighting off") -> go.Figure:
    """One row per step (each site off alone, then all), one column per number the task's comparison
    names (``fmw.analysis.attribution.compare_task_weighting_off``)."""
    table = comparison.table()
    columns = list(table[0]) if table else ["switched off"]
    cells = [[row[c] if isinstance(row[c], str) else f"{row[c]:.4g}" for row in table] for c in columns]
    figure = go.Figure(go.Table(header={"values": columns}, cells={"values": cells}))
    figure.update_layout(title=f"{title} ({comparison.task}; gates = {comparison.replacement})", margin=IMAGE_MARGIN)
    return figure
