"""Figures about models: predictions as bars and the model cards side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmw.figures.style import TIGHT_MARGIN


def model_cards_figure(
    names: Sequence[str],
    top1: Sequence[float | None],
    top1_weighting_off: Sequence[float | None],
    parameters: Sequence[int],
    multiply_adds: Sequence[int],
    *,
    height: int = 380,
) -> go.Figure:
    """Left: top-1 accuracy (%) with and without weighting per checkpoint (grouped bars; missing
    values are gaps, and a note says when none is recorded). Right: the cost, millions of
    parameters and of multiply-adds per image, per checkpoint."""
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("top-1 accuracy (%)", "cost (millions)"), horizontal_spacing=0.1
    )
    names = list(names)
    figure.add_trace(go.Bar(x=names, y=list(top1), name="weighting on", marker_color="#4c72b0"), row=1, col=1)
    figure.add_trace(
        go.Bar(x=names, y=list(top1_weighting_off), name="weighting off", marker_color="#c44e52"), row=1, col=1
    )
    for label, counts, colour in (("parameters", parameters, "#8172b3"), ("multiply-adds", multiply_adds, "#937860")):
        figure.add_trace(
            go.Bar(
                x=names,
                y=np.asarray(counts, dtype=np.float64) / 1e6,
                name=label,
                marker_color=colour,
                hovertemplate="%{x}<br>%{y:.3f} M " + label + "<extra></extra>",
            ),
            row=1,
            col=2,
        )
    if all(value is None for value in [*top1, *top1_weighting_off]):
        figure.add_annotation(
            text="no accuracy recorded", showarrow=False, xref="x domain", yref="y domain", x=0.5, y=0.5
        )
    figure.update_layout(height=height, barmode="group", margin=TIGHT_MARGIN)
    return figure


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
    figure.update_layout(
        title=title, height=height, margin=TIGHT_MARGIN, xaxis_range=[0, 1], yaxis_autorange="reversed"
    )
    return figure
