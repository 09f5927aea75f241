"""The Compare figure: what one weighting site did to one image, in one narrow column that reads at a
glance: the mean map over channels before and after, the gates over the image (the product of the
stages' channel means at each position), each stage as its layout draws it (the channel gate as
bars, the channels shown below highlighted; a coordinate gate as channels x positions; a full-size
gate as a montage), and the few channels the weighting changed most, each before and after, drawn
large enough to be pictures (``MAP_PIXELS``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import numpy as np
import plotly.graph_objects as go

from fmw.analysis.changes import SiteChange
from fmw.analysis.layouts import StageSummary
from fmw.figures.layouts import layout_figure
from fmw.figures.sites import _channel_gate_trace, _photo_source, _spatial_gate_trace, overlay_cells
from fmw.figures.stages import stage_title
from fmw.figures.style import MAPS_COLORSCALE, STAGE_COLOURS, _coloraxis, symmetric_limit

P = ParamSpec("P")
__all__ = ["COLUMN_PIXELS", "HIGHLIGHT_COLOUR", "MAP_PIXELS", "map_limit", "site_change_figure", "site_change_spec"]

COLUMN_PIXELS = 160  # the width the rows are sized for: a sixth of the page at a 1500-px-wide window
MAP_PIXELS = 72  # one map cell (two per row) at COLUMN_PIXELS; never below 48 on screen at that width
WIDE_PIXELS = 2 * MAP_PIXELS + 6  # a cell spanning both columns
BARS_PIXELS = 64
TITLE_PIXELS = 16  # room above each row for its subplot titles
GAP_PIXELS = 10  # between a row and the titles of the next, so each title reads as its own row's
HALF_GAP = 0.02  # half the gap between a row's two cells, as a fraction of the width
HIGHLIGHT_COLOUR = "#c44e52"
FONT_FAMILY = '"Source Sans Pro", "Source Sans 3", sans-serif'  # the dashboard's own
TEXT_COLOUR = "#31333f"
GRID_COLOUR = "#e6e6e6"

Trace = dict[str, Any]  # one trace as plotly's JSON has it (numpy arrays as they are)


def map_limit(*arrays: np.ndarray, quantile: float = 0.99) -> float:
    """A colour limit for maps read at a glance: the ``quantile`` of |value| over ``arrays``, so that a
    few extreme pixels do not wash every other map out (they saturate; hover still gives the raw
    value). ``symmetric_limit`` where that quantile is 0."""
    values = np.abs(np.concatenate([np.ravel(a) for a in arrays if a.size])) if any(a.size for a in arrays) else None
    limit = float(np.nanquantile(values, quantile)) if values is not None else 0.0
    return limit if np.isfinite(limit) and limit > 0 else symmetric_limit(*arrays)


def _map_trace(values: np.ndarray, name: str, what: str, coloraxis: str) -> Trace:
    """One map as a heatmap whose hover says what it is, the position and the value (the heatmap's own
    x and y are the column and row: no per-pixel hover data to send or for the browser to index)."""
    return {
        "type": "heatmap",
        "z": values.astype(np.float32),
        "hovertemplate": f"{what}<br>row %{{y}}, column %{{x}}<br>value %{{z:.4g}}<extra></extra>",
        "name": name,
        "coloraxis": coloraxis,
    }


def _plain(trace: go.BaseTraceType | Trace) -> Trace:
    """A trace as plotly's JSON has it; a graph object is read once, never validated again."""
    return trace if isinstance(trace, dict) else trace.to_plotly_json()


def _overlay_traces(image: np.ndarray, gate: np.ndarray, name: str, opacity: float = 0.55) -> list[Trace]:
    """The gate over the image (h, w) stretched over ``image``; hover gives the gate cell and its value."""
    source, width, height = _photo_source(image)
    cells = overlay_cells(
        gate,
        width,
        height,
        f"{name}<br>row %{{customdata[0]}}, column %{{customdata[1]}}<br>gate %{{z:.3f}}",
        opacity,
        showscale=False,
        name=name,
    )
    return [{"type": "image", "source": source, "hoverinfo": "skip", "name": "image"}, _plain(cells)]


def _channel_label(change: SiteChange, position: int) -> tuple[str, str]:
    """Titles of one changed channel's pair of cells: its index, and its gate (or, without a
    stage with a channel axis, how its RMS amplitude changed)."""
    channel = change.channels[position]
    effect = f"gate {channel.gate:.2f}" if channel.gate is not None else f"×{channel.ratio:.2f}"
    return f"ch {channel.channel}", effect


@dataclass
class _Cell:
    """One cell of the column: its title, whether it spans both halves, its traces, whether it shows a
    picture (square pixels, no ticks), and its axis overrides."""

    title: str
    wide: bool
    traces: list[Trace]
    picture: bool = True
    x_axis: dict[str, object] = field(default_factory=dict)
    y_axis: dict[str, object] = field(default_factory=dict)


def _map_pair(
    titles: tuple[str, str], maps: tuple[np.ndarray, np.ndarray], name: str, detail: str, coloraxis: str
) -> tuple[int, list[_Cell]]:
    """A row of two maps, before | after: traces named "<name> before" / "<name> after"."""
    cells = []
    for title, values, side in zip(titles, maps, ("before", "after")):
        what = f"{side}, {detail}" if detail else f"{name}, {side}"
        cells.append(_Cell(title, False, [_map_trace(values, f"{name} {side}", what, coloraxis)]))
    return MAP_PIXELS, cells


def _layout_cells(rows: list[tuple[int, list[_Cell]]], plot_area: int) -> tuple[list[Trace], dict]:
    """Place ``rows`` (pixel height, cells) top to bottom, one or two cells a row: each cell gets its
    own axes (numbered in order), its traces bound to them and its title above it. Done by hand
    rather than by ``make_subplots``: plain dictionaries, validated only if a figure is made of them."""
    traces: list[Trace] = []
    layout: dict = {"annotations": []}
    hidden = {"showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "constrain": "domain"}
    top, number = 1.0, 0
    for pixels, cells in rows:
        bottom = top - pixels / plot_area
        for position, cell in enumerate(cells):
            number += 1
            suffix = "" if number == 1 else str(number)
            x_domain = [0.0, 1.0] if cell.wide else [position * (0.5 + HALF_GAP), 0.5 - HALF_GAP + position * 0.5]
            x_axis: dict[str, object] = {"domain": x_domain, "anchor": f"y{suffix}"}
            y_axis: dict[str, object] = {"domain": [max(bottom, 0.0), top], "anchor": f"x{suffix}"}
            if cell.picture:
                x_axis.update(hidden, scaleanchor=f"y{suffix}")
                y_axis.update(hidden, autorange="reversed")
            layout[f"xaxis{suffix}"] = {**x_axis, **cell.x_axis}
            layout[f"yaxis{suffix}"] = {**y_axis, **cell.y_axis}
            for trace in cell.traces:
                trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
                traces.append(trace)
            layout["annotations"].append(
                {
                    "text": cell.title,
                    "x": sum(x_domain) / 2,
                    "y": top,
                    "xref": "paper",
                    "yref": "paper",
                    "xanchor": "center",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": 11},
                }
            )
        top = bottom - (TITLE_PIXELS + GAP_PIXELS) / plot_area
    return traces, layout


def _channel_bars(change: SiteChange, stage: StageSummary, gate_upper: float | None) -> tuple[int, list[_Cell]]:
    """A channel gate sorted largest first, the channels the column shows in ``HIGHLIGHT_COLOUR``."""
    gate = stage.gate
    order = np.argsort(-gate, kind="stable")
    bars = _plain(_channel_gate_trace(gate, order))
    shown = {channel.channel for channel in change.channels}
    colours = [HIGHLIGHT_COLOUR if int(c) in shown else STAGE_COLOURS["channel"] for c in order]
    # set on the plain JSON: assigning the list to the graph object would validate every colour
    bars["marker"] = {**bars.get("marker", {}), "color": colours}
    upper = gate_upper if gate_upper is not None else max(1.0, float(gate.max())) * 1.05
    y_axis = {"range": [min(0.0, float(gate.min())), upper], "nticks": 3, "gridcolor": GRID_COLOUR}
    y_axis["automargin"] = True  # room for the tick labels left of the bars
    title = "channel gate, largest first" if stage.name == "channel" else f"{stage.name}, largest first"
    return BARS_PIXELS, [_Cell(title, True, [bars], False, {"showticklabels": False, "ticks": ""}, y_axis)]


def site_change_spec(
    change: SiteChange,
    image: np.ndarray | None = None,
    *,
    limit: float | None = None,
    mean_limit: float | None = None,
    gate_upper: float | None = None,
    title: str = "",
) -> dict[str, Any]:
    """One column of the Compare view as plotly's JSON has it (``{"data": [...], "layout": {...}}``, numpy
    arrays as they are), top to bottom: the channel-mean map before | after (colour
    range ±``mean_limit``), the gates over ``image`` (H, W, 3 uint8; the gate alone without it;
    ``fmw.analysis.layouts.over_image``), each stage as its layout draws it (a channel gate sorted
    largest first on [0, ``gate_upper``] with the channels shown below in ``HIGHLIGHT_COLOUR``; a
    spatial gate is the picture over the image), the frame notes under the title, then each changed
    channel before | after on ±``limit`` (defaults: ``map_limit`` of the column's own maps). Pass the
    same limits to every column so equal colours mean equal values. Every map is its own trace, one map
    per cell, sized for a ``COLUMN_PIXELS``-wide column; hover names the channel or position and the
    value."""
    limit = limit or map_limit(change.before, change.after)
    mean_limit = mean_limit or map_limit(change.mean_before, change.mean_after)
    over = f"mean over {change.channel_count} channels"
    rows = [
        _map_pair(
            ("before (mean)", "after (mean)"), (change.mean_before, change.mean_after), "mean", over, "coloraxis2"
        )
    ]
    positional = change.gates_over_image
    if positional is not None:
        spatial_only = change.only_spatial_over_image
        name = "spatial gate" if spatial_only else "gates over the image"
        if image is None:
            gate_traces: list[Trace] = [
                _plain(
                    _spatial_gate_trace(
                        positional,
                        f"{name}<br>row %{{y}}, column %{{x}}<br>gate %{{z:.3f}}<extra></extra>",
                        showscale=False,
                        name=name,
                    )
                )
            ]
        else:
            gate_traces = _overlay_traces(image, positional, name)
        heading = "spatial gate over the image" if spatial_only else "gates over the image"
        rows.append((WIDE_PIXELS, [_Cell(heading, True, gate_traces)]))
    for stage in change.stages:
        if stage.layout == "channel":
            rows.append(_channel_bars(change, stage, gate_upper))
        elif stage.layout != "spatial":  # a spatial gate is the picture over the image
            entry = layout_figure(stage.layout)
            trace = _plain(entry.trace(stage.gate, stage_title(stage)))
            heatmap = trace["type"] == "heatmap"
            if heatmap:
                trace["showscale"] = False
            pixels = WIDE_PIXELS if heatmap else BARS_PIXELS
            plain = {"showticklabels": False, "ticks": ""}  # no room for tick labels in a column; hover tells
            rows.append((pixels, [_Cell(stage_title(stage), True, [trace], entry.picture, plain, dict(plain))]))
    if change.frame_notes:
        title = "<br>".join([title, *change.frame_notes]) if title else "<br>".join(change.frame_notes)
    for position, channel in enumerate(change.channels):
        maps = (change.before[position], change.after[position])
        rows.append(_map_pair(_channel_label(change, position), maps, f"channel {channel.channel}", "", "coloraxis"))
    plot_area = sum(pixels for pixels, _ in rows) + (TITLE_PIXELS + GAP_PIXELS) * (len(rows) - 1)
    title_lines = title.count("<br>") + 1 if title else 0
    margin = {"l": 4, "r": 4, "t": TITLE_PIXELS + 10 + 17 * title_lines, "b": 26}
    traces, layout = _layout_cells(rows, plot_area)
    layout.update(
        # plotly puts a multi-line title's top about one font size above its anchor: pad by that much
        title={"text": title, "font": {"size": 12}, "yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 16}},
        height=plot_area + margin["t"] + margin["b"],
        showlegend=False,
        bargap=0.0,
        # styled here rather than by a template, so the figure looks the same wherever it is drawn
        font={"family": FONT_FAMILY, "size": 11, "color": TEXT_COLOUR},
        paper_bgcolor="white",
        plot_bgcolor="white",
        coloraxis=_coloraxis(MAPS_COLORSCALE, limit, orientation="h", y=-0.01, yanchor="top", len=1.0),
        coloraxis2={**_coloraxis(MAPS_COLORSCALE, mean_limit), "showscale": False},
        margin=margin,
    )
    return {"data": traces, "layout": layout}


def _validated(build: Callable[P, dict[str, Any]]) -> Callable[P, go.Figure]:
    """A function taking ``build``'s arguments that returns ``build``'s spec as a plotly figure."""

    def figure(*args: P.args, **kwargs: P.kwargs) -> go.Figure:
        spec = build(*args, **kwargs)
        return go.Figure(data=spec["data"], layout=spec["layout"])

    figure.__signature__ = inspect.signature(build).replace(return_annotation=go.Figure)  # type: ignore[attr-defined]
    return figure


site_change_figure = _validated(site_change_spec)
site_change_figure.__name__ = site_change_figure.__qualname__ = "site_change_figure"
site_change_figure.__doc__ = """``site_change_spec(...)``'s column, with the same arguments, as a plotly
figure (validated), for a notebook, an HTML export or ``st.plotly_chart``. The dashboard's Compare
view sends the spec itself to its canvas."""
