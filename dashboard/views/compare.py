"""Compare view: one image, every selected model side by side (fmw checkpoints, torchvision, timm,
uploads), each at its site nearest one relative depth: the mean map over channels before and after
the weighting, the spatial gate over the image, the channel gate as bars, and the few channels the
weighting changed most, before and after, drawn large (``fmw.figures.compare``); top-5 predictions.

Columns share colour and axis ranges by default, so differences between weighting kinds are what the
eye sees; every column links to its full grids in the Layer explorer; downloads sit in one menu.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.figure_canvas import canvas_payload, show_canvas_figure
from dashboard.inputs import DashboardContext, ImageChoice, choose_image, current_context, require_models
from dashboard.predictions import DEFAULT_THRESHOLD, THRESHOLD_HELP, show_prediction, task_of
from dashboard.views.common import (
    EXPLORE_REQUEST_KEY,
    PNG_NOTE,
    analysis_downloads,
    analysis_of,
    file_stem,
    kept_for_image,
    kind_glossary,
    loading_progress,
)
from fmw.analysis import ImageAnalysis, site_index_at_depth
from fmw.analysis.changes import SiteChange, site_change
from fmw.figures.compare import map_limit, site_change_spec
from fmw.layers.descriptions import describe_kind

INTRO = (
    "One image through every selected model, side by side, each at the weighting layer nearest the chosen depth. "
    "**Before** is what the block computed (one map per channel), the **gate** is what the layer multiplies it "
    "by, and **after** is the product, what the next block receives. The top row averages all channels; the "
    "bars are the channel gate, largest first, with the channels drawn below it in red: the ones the weighting "
    "changed most, before and after. Below: what each model predicts, as its task shows it (classes; a detector's "
    "boxes on your image; a segmenter's mask with each class's share)."
)
COLUMNS_PER_ROW = 6  # a column is a sixth of the page whatever the model count, so maps keep their size


def _open_explorer(label: str, site: str) -> None:
    st.session_state[EXPLORE_REQUEST_KEY] = (label, site)


FIGURES_KEY = "fmw_compare_figures"  # this session's Compare figures of its current image


def column_figure(
    choice: ModelChoice,
    analysis: ImageAnalysis,
    position: int,
    change: SiteChange,
    ranges: dict[str, float | None],
    image: ImageChoice,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The column's figure spec (``site_change_spec``, tagged with the image it shows in
    ``layout.meta``) and what the canvas is sent for it, built once per model, site and colour ranges
    of this session's current image (``kept_for_image``); a plotly figure is made of the spec only
    for a download."""
    site = analysis.sites[position]

    def build() -> tuple[dict[str, Any], dict[str, Any]]:
        spec = site_change_spec(change, analysis.crop, **ranges, title=f"{choice.label}<br>{site.name}")
        spec["layout"]["meta"] = {"image": image.name}
        return spec, canvas_payload(spec)

    # id(analysis): this analysis (resolution and device included)
    key = (choice.cache_key, choice.label, id(analysis), site.name, tuple(sorted(ranges.items())))
    return kept_for_image(FIGURES_KEY, image, key, analysis, build)


def draw_column(
    choice: ModelChoice,
    analysis: ImageAnalysis,
    position: int,
    change: SiteChange,
    ranges: dict[str, float | None],
    image: ImageChoice,
    threshold: float,
) -> Callable[[], go.Figure]:
    """The column's header, figure, notes, prediction and Layer explorer link; returns what makes
    its plotly figure, for the download menu."""
    site = analysis.sites[position]
    height, width = analysis.resolution
    description = describe_kind(site.kind, tuple(site.gates))
    st.markdown(
        f"**{choice.label}**",
        help=f"{site.kind}: {description.title}, {description.formula}. {description.paper}".rstrip(". ") + ".",
    )
    seen = " (as the detector resized and padded it)" if task_of(analysis) == "detection" else ""
    st.caption(
        f"`{site.name}` (site {position + 1} of {len(analysis.sites)}) · {site.kind} · {site.channels} maps "
        f"of {site.before.shape[1]}×{site.before.shape[2]} · input {height}×{width} px{seen}"
    )
    spec, payload = column_figure(choice, analysis, position, change, ranges, image)
    show_canvas_figure(payload, f"compare-{choice.label}")
    for note in site.frame_notes:
        st.caption(f"Note: {note}")
    if site.gates:
        st.caption(f"After keeps {change.kept_energy:.0%} of the energy before.")
    else:
        st.caption("No gate: this site passes its input through unchanged.")
    show_prediction(analysis, image, f"compare-{choice.label}", threshold)
    if st.button(
        f"All {site.channels} maps",
        key=f"compare-explore-{choice.label}",
        icon=":material/layers:",
        help="Every channel before, after and their difference, in the Layer explorer",
        on_click=_open_explorer,
        args=(choice.label, site.name),
    ):
        st.switch_page("views/explorer.py")
    return lambda: go.Figure(data=spec["data"], layout=spec["layout"])


def shared_ranges(changes: list[SiteChange]) -> dict[str, float | None]:
    """One colour range for the shown maps, one for the channel means (each ``map_limit``: a few
    extreme pixels saturate rather than wash the rest out) and one axis for the channel gates across
    the columns, so equal colours and heights mean equal values."""
    gates = [change.channel_gate for change in changes if change.channel_gate is not None]
    return {
        "limit": map_limit(*[maps for change in changes for maps in (change.before, change.after)]),
        "mean_limit": map_limit(*[m for change in changes for m in (change.mean_before, change.mean_after)]),
        "gate_upper": max([1.0, *[float(np.max(gate)) for gate in gates]]) * 1.05,
    }


@st.fragment
def comparison(context: DashboardContext, image: ImageChoice) -> None:
    analyses: dict[str, tuple[ModelChoice, ImageAnalysis]] = {}
    for choice in loading_progress(context.models, "Loading and running"):
        analysis = analysis_of(context, choice, image)
        if analysis is not None and analysis.sites:
            analyses[choice.label] = (choice, analysis)
        elif analysis is not None:
            st.warning(f"{choice.label} has no weighting sites to compare.")
    if not analyses:
        return
    detecting = any(task_of(analysis) == "detection" for _, analysis in analyses.values())
    controls = st.columns([4, 2, 2, 1] if detecting else [4, 2, 1], vertical_alignment="bottom")
    depths = max(len(analysis.sites) for _, analysis in analyses.values())
    depth = controls[0].select_slider(
        "Depth",
        list(range(depths)),
        value=0,
        key="compare-depth",
        format_func=lambda d: f"site {d + 1} of {depths}",
        help="Relative depth: each model shows its site nearest to this fraction of the way through its network.",
    )
    ranges_choice = controls[1].radio(
        "Colour range",
        ("shared", "per column"),
        key="compare-ranges",
        horizontal=True,
        help="shared: every column on one range; per column: each model on its own "
        "(models of other families can differ in scale by orders of magnitude)",
    )
    threshold = DEFAULT_THRESHOLD
    if detecting:
        threshold = controls[2].slider(
            "Box score threshold", 0.0, 1.0, DEFAULT_THRESHOLD, 0.01, key="compare-threshold", help=THRESHOLD_HELP
        )
    positions = {
        label: site_index_at_depth(depth, depths, len(analysis.sites)) for label, (_, analysis) in analyses.items()
    }
    changes = {label: site_change(analysis.sites[positions[label]]) for label, (_, analysis) in analyses.items()}
    ranges: dict[str, float | None] = {"limit": None, "mean_limit": None, "gate_upper": None}
    if ranges_choice == "shared":
        ranges = shared_ranges(list(changes.values()))
    labels = list(analyses)
    figures: dict[str, Callable[[], go.Figure]] = {}
    for start in range(0, len(labels), COLUMNS_PER_ROW):
        for column, label in zip(st.columns(COLUMNS_PER_ROW), labels[start : start + COLUMNS_PER_ROW]):
            with column:
                choice, analysis = analyses[label]
                figures[label] = draw_column(
                    choice, analysis, positions[label], changes[label], ranges, image, threshold
                )
    with controls[-1].popover("Downloads", icon=":material/download:", width="stretch"):
        label = st.selectbox("Model", labels, key="compare-download-model")
        label = label if label in analyses else labels[0]
        analysis_downloads(
            analyses[label][1], figures[label], file_stem(label, image.name), "compare-download", side_by_side=False
        )
        st.caption(f"The CSV and NPZ hold every site of this image; the HTML is the model's column. {PNG_NOTE}")
    kind_glossary(sorted({analysis.sites[positions[label]].kind for label, (_, analysis) in analyses.items()}))


def render(context: DashboardContext) -> None:
    st.header("Compare models on one image")
    words, picture, chooser = st.columns([5, 1, 2], vertical_alignment="center")
    words.markdown(INTRO)
    with chooser:
        image = choose_image(context, key="compare-image")
    if image is None:
        return
    picture.image(image.rgb, width="stretch")
    if require_models(context):
        comparison(context, image)


render(current_context())
