"""Layer explorer: one model, one weighting site, one image: before | after | difference grids of
all channels, the channel gate sorted, the spatial gate as a map and over the image, and downloads.

Channels can be ordered by index, gate or energy change, on a shared or a per-map colour scale.
"""

from __future__ import annotations

import streamlit as st

from dashboard.inputs import DashboardContext, ImageChoice, current_context
from dashboard.registry import ModelChoice
from dashboard.views.common import (
    PNG_NOTE,
    analysis_downloads,
    choose_analysis,
    file_stem,
    predictions_table,
    show_figure,
)
from fmw.analysis import ImageAnalysis, available_orderings, channel_order
from fmw.figures import channel_gate_figure, explorer_grids_figure, spatial_gate_figure, spatial_overlay_figure

ORDERING_HELP = (
    "index: channel 0 first · gate: largest channel gate first · "
    "energy change: the channel whose energy (mean square) weighting changed most first"
)


@st.fragment
def site_explorer(choice: ModelChoice, analysis: ImageAnalysis, image: ImageChoice) -> None:
    names = [site.name for site in analysis.sites]
    controls = st.columns(3)
    name = controls[0].selectbox(
        "Weighting site",
        names,
        key="explorer-site",
        format_func=lambda n: f"{n} ({analysis.sites[names.index(n)].kind})",
    )
    site = analysis.sites[names.index(name) if name in names else 0]
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
    grids = explorer_grids_figure(site.before, site.after, order=order, per_map_scale=scale == "per map")
    grids.update_layout(
        title=f"{choice.label}: {site.name}", margin_t=72
    )  # room for the title above the subplot titles
    show_figure(grids, image, "explorer-grids")
    analysis_downloads(analysis, grids, file_stem(choice.label, site.name, image.name), "explorer-download")
    st.caption(f"The CSV and NPZ hold every site of this image; the HTML is the grids above. {PNG_NOTE}")
    if not site.gates:
        st.caption("This site applies no gate (kind 'none'): after equals before.")
    gate_columns = st.columns(3)
    if site.channel_gate is not None:
        with gate_columns[0]:
            show_figure(channel_gate_figure(site.channel_gate, title="channel gate, sorted"), image, "explorer-channel")
    if site.spatial_gate is not None:
        with gate_columns[1]:
            show_figure(spatial_gate_figure(site.spatial_gate), image, "explorer-spatial")
        with gate_columns[2]:
            show_figure(spatial_overlay_figure(analysis.crop, site.spatial_gate), image, "explorer-overlay")


def render(context: DashboardContext) -> None:
    st.header("Layer explorer")
    selection = choose_analysis(context, "explorer")
    if selection is None:
        return
    choice, analysis, image = selection.choice, selection.analysis, selection.image
    if not analysis.sites:
        st.info(f"{choice.label} has no weighting sites to explore.")
        return
    left, right = st.columns([1, 3])
    left.image(analysis.crop, caption=f"{image.name}, the crop the model sees", width=200)
    right.markdown(f"**{choice.label}**")
    right.markdown(predictions_table(analysis.predictions))
    site_explorer(choice, analysis, image)


render(current_context())
