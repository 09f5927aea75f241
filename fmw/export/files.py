"""Exports for downloads and reports: gates as CSV text, captured tensors as NPZ bytes, one figure as
a standalone HTML file, and self-contained HTML pages of many figures (plotly.js embedded once).

PNG: the plotly toolbar's camera button saves any figure as PNG in the browser, with no extra
server-side dependency (plotly's own PNG export needs kaleido and a Chrome).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from fmw.analysis import ImageAnalysis, SiteSummary
from fmw.analysis.layouts import layout_analysis

FIGURE_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h2 { border-top: 1px solid #ccc; padding-top: 1rem; }
p.note { color: #555; }
p.error { color: #a00; background: #fee; padding: 0.4rem 0.6rem; border-left: 4px solid #a00; }
"""


@dataclass
class Section:
    """A heading (``level`` 2 or deeper) with notes, error lines and figures, in that order."""

    title: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    level: int = 2


def gates_csv(sites: Sequence[SiteSummary]) -> str:
    """Every gate value of ``sites`` (an ``ImageAnalysis``'s) as CSV text, one value per row:
    site, kind, stage, its layout, then channel, row and column where the layout has that axis
    (empty otherwise), gate."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["site", "kind", "stage", "layout", "channel", "row", "column", "gate"])
    for site in sites:
        for stage in site.stages:
            axes = layout_analysis(stage.layout).axes
            for index, value in np.ndenumerate(stage.gate):
                position = dict(zip(axes, index))
                place = [position.get(axis, "") for axis in "CHW"]
                writer.writerow([site.name, site.kind, stage.name, stage.layout, *place, repr(float(value))])
    return buffer.getvalue()


def analysis_arrays(analysis: ImageAnalysis) -> dict[str, np.ndarray]:
    """The tensors of one analysis by name: ``crop``, ``probabilities`` of the top classes with
    their ``classes``, and per site ``<site>.before``, ``.after`` and per stage ``.<stage>_gate`` (each
    with its layout's axes: ``.channel_gate`` (C,), ``.coord_h_gate`` (C, H), ``.full_gate`` (C, H, W))."""
    arrays = {
        "crop": analysis.crop,
        "classes": np.array([p.index for p in analysis.predictions], dtype=np.int64),
        "probabilities": np.array([p.probability for p in analysis.predictions], dtype=np.float32),
    }
    for site in analysis.sites:
        arrays[f"{site.name}.before"] = site.before
        arrays[f"{site.name}.after"] = site.after
        for stage, gate in site.gates.items():
            arrays[f"{site.name}.{stage}_gate"] = gate
    return arrays


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of a compressed ``.npz`` file (read back with ``numpy.load``)."""
    buffer = io.BytesIO()
    # numpy's default, named so that an array called "allow_pickle" cannot be taken for the flag
    np.savez_compressed(buffer, allow_pickle=True, **arrays)
    return buffer.getvalue()


def figure_html(figure: go.Figure) -> bytes:
    """One figure as a standalone HTML file with plotly.js inside (opens offline)."""
    return figure.to_html(full_html=True, include_plotlyjs=True, config=FIGURE_CONFIG).encode("utf-8")


def html_page(title: str, sections: Sequence[Section]) -> str:
    """One self-contained HTML page: plotly.js is embedded inline with the first figure only."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    embedded = False
    for section in sections:
        level = min(max(section.level, 2), 6)
        parts.append(f"<h{level}>{html.escape(section.title)}</h{level}>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
        parts += [f'<p class="error">{html.escape(error)}</p>' for error in section.errors]
        for figure in section.figures:
            parts.append(figure.to_html(full_html=False, include_plotlyjs=not embedded, config=FIGURE_CONFIG))
            embedded = True
    parts.append("</body></html>")
    return "\n".join(parts)


def write_page(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write ``html_page(title, sections)`` to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(title, sections), encoding="utf-8")
    return path
