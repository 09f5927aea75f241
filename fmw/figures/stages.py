"""Figures of a site's stages whatever their layouts (each drawn by ``fmw.figures.layouts``): the
site column (maps before and after, then every stage) and one stage alone. The stages are
``fmw.analysis.layouts.StageSummary`` records (name, layout, gate, frame note)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmw.figures.layouts import layout_figure
from fmw.figures.sites import _finish_image_figure, _grid_trace
from fmw.figures.style import MAPS_COLORSCALE, TIGHT_MARGIN, _coloraxis, _image_axes, symmetric_limit

if TYPE_CHECKING:
    from fmw.analysis.layouts import StageSummary

__all__ = ["site_column_figure", "stage_figure", "stage_title"]


def stage_title(stage: StageSummary) -> str:
    """ "channel gate" for a stage named after its layout, "channel_2 (channel gate)" otherwise."""
    title = layout_figure(stage.layout).title
    return title if stage.name == stage.layout else f"{stage.name} ({title})"


def stage_figure(stage: StageSummary, *, title: str | None = None, height: int = 260) -> go.Figure:
    """One stage alone, drawn as its layout asks; the frame note, if any, under the title."""
    entry = layout_figure(stage.layout)
    text = title or stage_title(stage)
    if stage.frame_note:
        text += f"<br><sup>{stage.frame_note}</sup>"
    if entry.figure is not None:
        figure = entry.figure(stage.gate, text)
        figure.update_layout(height=height)
        return figure
    figure = go.Figure(entry.trace(stage.gate, stage_title(stage)))
    if entry.picture:
        return _finish_image_figure(figure, text, height)
    figure.update_layout(title=text, height=height, margin={**TIGHT_MARGIN, "t": 60})
    return figure


def site_column_figure(
    before: np.ndarray,
    after: np.ndarray,
    stages: Sequence[StageSummary] = (),
    *,
    limit: float | None = None,
    gate_upper: float | None = None,
    title: str = "",
) -> go.Figure:
    """One site of one checkpoint, top to bottom in one figure (one column of the Compare view):
    before and after grids on the colour range ±``limit``, then each stage as its layout draws it
    (a channel gate by channel index on [0, ``gate_upper``], a spatial gate on [0, 1], ...). Pass
    the same ``limit`` and ``gate_upper`` to every column so equal colours and heights mean equal values."""
    limit = limit or symmetric_limit(before, after)
    entries = [layout_figure(stage.layout) for stage in stages]
    titles = ("before", "after", *(stage_title(stage) for stage in stages))
    heights = (3.0, 3.0, *(entry.height for entry in entries))
    figure = make_subplots(rows=len(titles), cols=1, subplot_titles=titles, row_heights=heights, vertical_spacing=0.05)
    figure.add_trace(_grid_trace(before, None, False, "before", "coloraxis"), row=1, col=1)
    figure.add_trace(_grid_trace(after, None, False, "after", "coloraxis"), row=2, col=1)
    image_subplots = [1, 2]
    for row, (stage, entry) in enumerate(zip(stages, entries), start=3):
        trace = entry.trace(stage.gate, stage_title(stage))
        if isinstance(trace, go.Heatmap):
            trace.update(showscale=False)
        figure.add_trace(trace, row=row, col=1)
        if entry.picture:
            image_subplots.append(row)
        if stage.layout == "channel" and gate_upper is not None:
            figure.update_yaxes(range=[min(0.0, float(stage.gate.min())), gate_upper], row=row, col=1)
    notes = list(dict.fromkeys(stage.frame_note for stage in stages if stage.frame_note))
    text = "<br>".join([title, *notes]) if title else "<br>".join(notes)
    title_lines = text.count("<br>") + 1 if text else 1  # columns are narrow: callers break long titles
    figure.update_layout(
        title={"text": text, "font": {"size": 14}},
        height=int(100 * sum(heights)) + 70 + 20 * title_lines,
        showlegend=False,
        bargap=0.05,
        coloraxis=_coloraxis(MAPS_COLORSCALE, limit, orientation="h", y=-0.02, yanchor="top"),
        margin={**TIGHT_MARGIN, "t": 50 + 20 * title_lines},
    )
    _image_axes(figure, image_subplots)
    return figure
