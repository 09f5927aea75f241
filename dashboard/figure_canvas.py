"""Plotly figures drawn on a canvas by a small Streamlit component, for views that redraw many figures
on every widget change (Compare: one per model; the Layer explorer's grids and gates).

Why: ``st.plotly_chart`` gives a chart a new identity whenever its figure changes, so the browser
tears the chart down and builds a new plotly plot, SVG and all: measured in Chromium on the 2-core
machine, eight Compare columns cost about 0.45 s a redraw even with empty figures, and 1.2 s with
theirs. This component keeps one element per key across reruns and draws the new figure's traces on
the canvas it already has (a few milliseconds a column); a rerun that sends the same figure draws
nothing.

What it draws: the figure is plotly's own JSON (as ``figure.to_json()`` writes it), so the
figure built for a view is still the one definition of what it shows, and the same figure is what
the view offers as an HTML download. The canvas draws the subset fmw's Compare and Layer explorer
figures use: heatmaps (colour axis or own colour scale, ``x0``/``dx``/``y0``/``dy``, opacity, gaps
left blank), images (a ``source`` or their pixels), bars, lines with markers, axes by ``domain``
(square units where an x axis has ``scaleanchor``; first row on top where the y axis is
``autorange="reversed"``), grid lines and tick labels of axes that are not pictures, x axis titles,
annotations, the title, and colour bars (horizontal ones in the bottom margin, vertical ones in a
right margin kept for them). Other margins are kept as given: y tick labels go inside their axes,
where plotly would widen the margin for them (so maps sit a few pixels larger than in plotly's
drawing). Hover shows each trace's own ``hovertemplate`` (``%{x}``, ``%{y}``, ``%{z}``,
``%{customdata}``, ``%{customdata[i]}``, ``%{fullData.name}``, formats ``.Nf`` and ``.Ng``); a box
dragged on a pair of axes zooms into it and a double click zooms out, as in plotly. Plotly's toolbar
(pan, PNG export) is not there; every figure drawn this way is offered as an HTML download, which
has it.

The drawing is ``figure_canvas.js``, trusted code shipped with the package; the figure is data
only (no code arrives from the browser or is sent in a figure)."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import get_colorscale

SCRIPT = Path(__file__).with_name("figure_canvas.js")
COMPONENT_NAME = "fmw.figure_canvas"


_TYPED = {"f": "f", "i": "i", "u": "u", "b": "u"}  # numpy kind -> plotly's typed-array kind


def _typed_array(array: np.ndarray) -> dict[str, str]:
    """``array`` as plotly's typed-array JSON: little-endian bytes in base64, its dtype and shape.
    64-bit integers (which JavaScript's typed arrays do not hold as numbers) become 32-bit, or
    float64 where they do not fit."""
    if array.dtype.kind not in _TYPED:
        raise TypeError(f"cannot send an array of {array.dtype} to the canvas")
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    elif array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        fits = array.size == 0 or (array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max)
        array = array.astype(np.int32 if fits else np.float64)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    encoded = {
        "dtype": f"{_TYPED[array.dtype.kind]}{array.dtype.itemsize}",
        "bdata": base64.b64encode(array.tobytes()).decode(),
    }
    if array.ndim > 1:
        encoded["shape"] = ", ".join(str(size) for size in array.shape)
    return encoded


@cache
def _named_colorscale(name: str) -> tuple[tuple[float, str], ...]:
    """A named colour scale's stops, looked up once (plotly searches all its scales on every call)."""
    return tuple((float(stop), colour) for stop, colour in get_colorscale(name))


def _colorscale(name: str) -> list[list[float | str]]:
    """A named colour scale as plotly's JSON writes it: its stops as [position, colour] lists."""
    return [[stop, colour] for stop, colour in _named_colorscale(name)]


def plotly_json(value: Any) -> Any:
    """A figure spec (plotly's JSON structure, numpy arrays as they are) made JSON-ready: arrays as
    typed arrays, numpy scalars as numbers, colour scales by name as their colours (as plotly's
    validation would write them)."""
    if isinstance(value, np.ndarray):
        return _typed_array(value)
    if isinstance(value, dict):
        return {
            key: _colorscale(item) if key == "colorscale" and isinstance(item, str) else plotly_json(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plotly_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def canvas_payload(figure: dict[str, Any] | go.Figure) -> dict[str, Any]:
    """What the component is sent for ``figure`` (a plotly figure, or its spec as
    ``fmw.figures.compare.site_change_spec`` makes it, which saves validating it): plotly's JSON of
    it, arrays as base64 typed arrays and no template (fmw's figures style themselves), and a version,
    a digest of that JSON, so the browser redraws only when the figure changed."""
    if isinstance(figure, go.Figure):
        spec = plotly_json(figure.to_plotly_json())
        spec["layout"].pop("template", None)
    else:
        spec = plotly_json(figure)
    text = json.dumps(spec, separators=(",", ":"), sort_keys=True)
    return {"figure": spec, "version": hashlib.blake2b(text.encode(), digest_size=12).hexdigest()}


@cache
def _component() -> Any:
    """The component, registered once per process (registering again would only log a warning)."""
    return st.components.v2.component(COMPONENT_NAME, js=SCRIPT.read_text(encoding="utf-8"), isolate_styles=False)


def show_canvas_figure(payload: dict[str, Any], key: str) -> None:
    """Draw a figure prepared by ``canvas_payload`` under ``key``: the element keeps its identity
    from one rerun to the next, so a changed figure is redrawn in place."""
    _component()(key=key, data={**payload, "key": key})
