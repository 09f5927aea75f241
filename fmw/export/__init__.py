"""What leaves fmw as files: arrays (``.npz``), gates (CSV), figures and self-contained HTML pages;
the HTML report of images and checkpoints is ``fmw.export.report``."""

from __future__ import annotations

from fmw.export.files import (
    FIGURE_CONFIG,
    PAGE_STYLE,
    Section,
    analysis_arrays,
    figure_html,
    gates_csv,
    html_page,
    npz_bytes,
    write_page,
)

__all__ = [
    "FIGURE_CONFIG",
    "PAGE_STYLE",
    "Section",
    "analysis_arrays",
    "figure_html",
    "gates_csv",
    "html_page",
    "npz_bytes",
    "write_page",
]
