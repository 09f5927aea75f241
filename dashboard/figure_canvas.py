"""Plotly figures drawn on a canvas by a small Streamlit component, for views that redraw many figures
on every widget change (Compare: one per model).

Why: ``st.plotly_chart`` gives a chart a new identity whenever its figure changes, so the browser
tears the chart down and builds a new plotly plot, SVG and all: measured in Chromium on the 2-core
machine, eight Compare columns cost about 0.45 s a redraw even with empty figures, and 1.2 s with
theirs. This component keeps one element per key across reruns and draws the new figure's traces on
the canvas it already has (a few milliseconds a column); a rerun that sends the same figure draws
nothing.

What it draws: the figure is plotly's own JSON (the one ``figure.to_json()`` writes), so the
figure built for a view is still the one definition of what it shows, and the same figure is what
the view offers as an HTML download. The canvas draws the subset fmw's Compare figures use:
heatmaps (colour axis or own colour scale, ``x0``/``dx``/``y0``/``dy``, opacity, gaps left blank),
images given by ``source``, bars, lines with markers, axes by ``domain`` (square units where an x axis
has ``scaleanchor``; first row on top where the y axis is ``autorange="reversed"``), grid lines where
an axis sets ``gridcolor``, annotations, the title and horizontal colour bars. Hover shows each
trace's own ``hovertemplate`` (``%{x}``, ``%{y}``, ``%{z}``, ``%{customdata}``, ``%{customdata[i]}``,
formats ``.Nf`` and ``.Ng``). Plotly's toolbar (zoom, pan, PNG export) is not there; every figure
drawn this way is offered as an HTML download, which has it.

The drawing is ``figure_canvas.js``, trusted code shipped with the package; the figure is data
only (no code arrives from the browser or is sent in a figure)."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

SCRIPT = Path(__file__).with_name("figure_canvas.js")
COMPONENT_NAME = "fmw.figure_canvas"


def canvas_payload(figure: go.Figure) -> dict[str, Any]:
    """What the component is sent for ``figure``: plotly's JSON of it (numpy arrays as base64 typed
    arrays, the default template left out: fmw's figures style themselves) and a version, a digest
    of that JSON, so the browser redraws only when the figure changed."""
    spec = json.loads(figure.to_json())
    spec["layout"].pop("template", None)
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
