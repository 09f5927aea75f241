"""Layer explorer: one model, one weighting site, one image: before | after | difference grids of
all channels, every stage as its layout draws it (the channel gate sorted, the spatial gate as a map,
a coordinate gate as channels x positions, a full-size gate as a montage), the gates over the image,
and downloads.

Channels can be ordered by index, gate or energy change, on a shared or a per-map colour scale. It opens
on CBAM (two gates to explore) unless the Compare view sent a model and site here.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.figure_canvas import show_canvas_figure
from dashboard.inputs import DashboardContext, ImageChoice, current_context
from dashboard.predictions import prediction_line, task_of
from dashboard.views.common import (
    EXPLORE_REQUEST_KEY,
    PNG_NOTE,
    analysis_downloads,
    canvas_figure,
    choose_analysis,
    explain_site,
    file_stem,
    kept_for_image,
)
from fmw.analysis import ImageAnalysis, available_orderings, channel_order
from fmw.figures import explorer_grids_figure, spatial_overlay_figure, stage_figure

INTRO = (
    "Every channel of one weighting layer on one image: the maps **before** the layer, **after** it, and their "
    "difference, tiled in one grid each, with the layer's gates below. Order the channels by gate or by how much "
    "the weighting changed them to see which maps the layer keeps and which it suppresses; hover a tile for its "
    "channel and value."
)
PREFERRED_KINDS = ("cbam", "channel", "eca", "spatial", "scale")  # CBAM first: a channel and a spatial gate
FIGURES_KEY = "fmw_explorer_figures"  # this session's Layer explorer figures of its current image
ORDERING_HELP = (
    "index: channel 0 first · gate: largest channel gate first · "
    "energy change: the channels the weighting changed most first (by RMS amplitude, as Compare picks them)"
)


@st.fragment
def site_explorer(choice: ModelChoice, analysis: ImageAnalysis, image: ImageChoice) -> None:
    names = [site.name for site in analysis.sites]
    controls = st.columns([3, 3, 2, 1], vertical_alignment="bottom")
    # plain names: Streamlit keeps a keyed select box's formatted labels when only the model changes,
    # so a label naming the kind went stale (the kind is in the explanation below)
    name = controls[0].selectbox("Weighting site", names, key="explorer-site")
    site = analysis.sites[names.index(name) if name in names else 0]
    explain_site(site)
    ordering = controls[1].radio(
        "Order channels by", available_orderings(site), key="explorer-order", horizontal=True, help=ORDERING_HELP
    )
    scale = controls[2].radio(
        "Colour scale",
        ("shared", "per map"),
        key="explorer-scale",
        horizontal=True,
        help="shared: one range for all maps; per map: each map spans its own range (hover still shows the raw value)",
    )
    order = channel_order(site, ordering)
    st.caption(f"{site.channels} channels of {site.before.shape[1]}×{site.before.shape[2]}, ordered by {ordering}.")
    site_key = (choice.cache_key, choice.label, id(analysis), site.name)

    def grids_figure() -> tuple[go.Figure, dict]:
        grids = explorer_grids_figure(site.before, site.after, order=order, per_map_scale=scale == "per map")
        grids.update_layout(title=f"{choice.label}: {site.name}", margin_t=72)  # room above the subplot titles
        return canvas_figure(grids, image)

    grids, payload = kept_for_image(FIGURES_KEY, image, (*site_key, ordering, scale), analysis, grids_figure)
    show_canvas_figure(payload, "explorer-grids")
    with controls[3].popover("Files", icon=":material/download:", help="Downloads: gates, tensors, figure"):
        stem = file_stem(choice.label, site.name, image.name)
        analysis_downloads(analysis, grids, stem, "explorer-download", side_by_side=False)
        st.caption(f"The CSV and NPZ hold every site of this image; the HTML is the grids. {PNG_NOTE}")
    if not site.gates:
        st.caption("This site applies no gate (kind 'none'): after equals before.")

    def gate_figures() -> list[tuple[dict, str]]:
        figures = [(stage_figure(stage), f"explorer-{stage.name}") for stage in site.stages]
        over = site.gates_over_image
        if over is not None:
            spatial = site.only_spatial_over_image
            title = "spatial gate over the input" if spatial else "gates over the input (channel means)"
            figures.append((spatial_overlay_figure(analysis.crop, over, title=title), "explorer-overlay"))
        return [(canvas_figure(figure, image)[1], key) for figure, key in figures]

    gates = kept_for_image(FIGURES_KEY, image, site_key, analysis, gate_figures)
    for start in range(0, len(gates), 3):
        for column, (payload, key) in zip(st.columns(3), gates[start : start + 3]):
            with column:
                show_canvas_figure(payload, key)


def _follow_request(context: DashboardContext) -> None:
    """Open on the model and site the Compare view asked for (once), by setting the select boxes."""
    request = st.session_state.pop(EXPLORE_REQUEST_KEY, None)
    if request is not None and request[0] in [choice.label for choice in context.models]:
        st.session_state["explorer-checkpoint"], st.session_state["explorer-site"] = request


def render(context: DashboardContext) -> None:
    st.header("Layer explorer")
    st.markdown(INTRO)
    _follow_request(context)
    selection = choose_analysis(context, "explorer", preferred=PREFERRED_KINDS)
    if selection is None:
        return
    choice, analysis, image = selection.choice, selection.analysis, selection.image
    if not analysis.sites:
        st.info(f"{choice.label} has no weighting sites to explore.")
        return
    left, right = st.columns([1, 7], vertical_alignment="center")
    seen = (
        "the image the detector saw (resized, padded)"
        if task_of(analysis) == "detection"
        else "the crop the model sees"
    )
    left.image(analysis.crop, caption=seen, width=110)
    right.markdown(f"**{choice.label}** ({task_of(analysis)}) on {image.name}: {prediction_line(analysis)}")
    site_explorer(choice, analysis, image)


render(current_context())
