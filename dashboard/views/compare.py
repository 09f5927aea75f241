"""Compare view: one image, every selected checkpoint side by side: top-5 predictions, and at one
depth the maps before and after each checkpoint's weighting and the gate(s) it applied.

Columns share colour and axis ranges, so differences between weighting kinds are what the eye sees.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.inputs import DashboardContext, ImageChoice, choose_image, current_context, require_checkpoints
from dashboard.views.common import analysis_of, predictions_table, show_figure
from fmw.analysis import ImageAnalysis, SiteSummary, site_index_at_depth
from fmw.viz import site_column_figure, symmetric_limit


def site_at(analysis: ImageAnalysis, depth: int, depths: int) -> SiteSummary:
    return analysis.sites[site_index_at_depth(depth, depths, len(analysis.sites))]


def draw_column(
    name: str, analysis: ImageAnalysis, site: SiteSummary, limit: float, gate_upper: float, image: ImageChoice
) -> None:
    st.markdown(f"**{name}**")
    st.caption(f"`{site.name}` · {site.kind} · {site.channels} maps of {site.before.shape[1]}×{site.before.shape[2]}")
    st.markdown(predictions_table(analysis.predictions))
    figure = site_column_figure(site.before, site.after, site.channel_gate, site.spatial_gate, limit=limit,
                                gate_upper=gate_upper)
    show_figure(figure, image, f"compare-{name}")
    if not site.gates:
        st.caption("No gate: this site passes its input through unchanged.")


@st.fragment
def comparison(context: DashboardContext, image: ImageChoice) -> None:
    analyses = {}
    for checkpoint in context.checkpoints:
        analysis = analysis_of(context, checkpoint, image)
        if analysis is not None and analysis.sites:
            analyses[checkpoint.name] = analysis
    if not analyses:
        return
    depths = max(len(analysis.sites) for analysis in analyses.values())
    depth = st.select_slider(
        "Depth", list(range(depths)), value=0, key="compare-depth", format_func=lambda d: f"site {d + 1} of {depths}"
    )
    sites = {name: site_at(analysis, depth, depths) for name, analysis in analyses.items()}
    limit = symmetric_limit(*[m for site in sites.values() for m in (site.before, site.after)])
    channel_gates = [site.channel_gate for site in sites.values() if site.channel_gate is not None]
    gate_upper = max([1.0, *[float(np.max(gate)) for gate in channel_gates]]) * 1.05
    for column, (name, analysis) in zip(st.columns(len(analyses)), analyses.items()):
        with column:
            draw_column(name, analysis, sites[name], limit, gate_upper, image)


def render(context: DashboardContext) -> None:
    st.header("Compare checkpoints on one image")
    image = choose_image(context, key="compare-image")
    if image is None:
        return
    st.image(image.rgb, caption=image.name, width=220)
    if require_checkpoints(context):
        comparison(context, image)


render(current_context())
