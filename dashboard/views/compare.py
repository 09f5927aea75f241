"""Compare view: one image, every selected model side by side (fmw checkpoints, torchvision, timm,
uploads): top-5 predictions, and at one relative depth each model's nearest site: its maps before and
after weighting and the gate(s) it applied. Each model gets its own preprocessing and input size.

Columns share colour and axis ranges by default, so differences between weighting kinds are what the eye sees.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.inputs import DashboardContext, ImageChoice, choose_image, current_context, require_models
from dashboard.registry import ModelChoice
from dashboard.views.common import PNG_NOTE, analysis_downloads, analysis_of, file_stem, predictions_table, show_figure
from fmw.analysis import ImageAnalysis, site_index_at_depth
from fmw.figures import site_column_figure
from fmw.figures.style import symmetric_limit


def draw_column(
    choice: ModelChoice,
    analysis: ImageAnalysis,
    position: int,
    limit: float | None,
    gate_upper: float | None,
    image: ImageChoice,
) -> None:
    site = analysis.sites[position]
    height, width = analysis.resolution
    st.markdown(f"**{choice.label}**")
    st.caption(
        f"`{site.name}` (site {position + 1} of {len(analysis.sites)}) · {site.kind} · {site.channels} maps "
        f"of {site.before.shape[1]}×{site.before.shape[2]} · input {height}×{width} px"
    )
    st.markdown(predictions_table(analysis.predictions))
    figure = site_column_figure(
        site.before,
        site.after,
        site.channel_gate,
        site.spatial_gate,
        limit=limit,
        gate_upper=gate_upper,
        title=f"{choice.label}<br>{site.name}",
    )
    show_figure(figure, image, f"compare-{choice.label}")
    if not site.gates:
        st.caption("No gate: this site passes its input through unchanged.")
    analysis_downloads(
        analysis, figure, file_stem(choice.label, image.name), f"compare-download-{choice.label}", side_by_side=False
    )


@st.fragment
def comparison(context: DashboardContext, image: ImageChoice) -> None:
    analyses: dict[str, tuple[ModelChoice, ImageAnalysis]] = {}
    for choice in context.models:
        analysis = analysis_of(context, choice, image)
        if analysis is not None and analysis.sites:
            analyses[choice.label] = (choice, analysis)
        elif analysis is not None:
            st.warning(f"{choice.label} has no weighting sites to compare.")
    if not analyses:
        return
    controls = st.columns([3, 1])
    depths = max(len(analysis.sites) for _, analysis in analyses.values())
    depth = controls[0].select_slider(
        "Depth",
        list(range(depths)),
        value=0,
        key="compare-depth",
        format_func=lambda d: f"site {d + 1} of {depths}",
        help="Relative depth: each model shows its site nearest to this fraction of the way through its network.",
    )
    ranges = controls[1].radio(
        "Colour range",
        ("shared", "per column"),
        key="compare-ranges",
        horizontal=True,
        help="shared: every column on one range; per column: each model on its own "
        "(models of other families can differ in scale by orders of magnitude)",
    )
    positions = {
        label: site_index_at_depth(depth, depths, len(analysis.sites)) for label, (_, analysis) in analyses.items()
    }
    limit = gate_upper = None
    if ranges == "shared":
        sites = [analysis.sites[positions[label]] for label, (_, analysis) in analyses.items()]
        limit = symmetric_limit(*[m for site in sites for m in (site.before, site.after)])
        channel_gates = [site.channel_gate for site in sites if site.channel_gate is not None]
        gate_upper = max([1.0, *[float(np.max(gate)) for gate in channel_gates]]) * 1.05
    for column, (label, (choice, analysis)) in zip(st.columns(len(analyses)), analyses.items()):
        with column:
            draw_column(choice, analysis, positions[label], limit, gate_upper, image)
    st.caption(PNG_NOTE)


def render(context: DashboardContext) -> None:
    st.header("Compare models on one image")
    image = choose_image(context, key="compare-image")
    if image is None:
        return
    st.image(image.rgb, caption=image.name, width=220)
    if require_models(context):
        comparison(context, image)


render(current_context())
