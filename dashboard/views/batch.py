"""Batch statistics: every image in the sidebar analysed by one model (with a progress bar),
then per site the distribution of gate values, the per-channel mean gate and the energy ratio; it opens
on CBAM, whose two gate stages make two distributions. A sidebar with a single image is widened to
every sample photo by default (one image makes no distribution); the checkbox says so and undoes it."""

from __future__ import annotations

import streamlit as st

from dashboard.inputs import (
    DashboardContext,
    ImageChoice,
    choose_model,
    current_context,
    require_models,
    sample_choice,
    sample_label,
)
from dashboard.services import guarded
from dashboard.settings import SAMPLE_PHOTOS
from dashboard.views.common import PLOT_CONFIG, analyses_of, explain_site
from fmw.analysis import SiteStatistics, batch_statistics
from fmw.figures import channel_statistics_figure, gate_histogram_figure, stage_figure, stage_title

INTRO = (
    "One model on every image in the sidebar at once: how its gates are distributed, which channels they keep "
    "on average (mean gate ± std per channel) and how much of each channel's energy survives the weighting "
    "(**after** / **before**, 1 = unchanged). Add your own photos in the sidebar to widen the batch."
)
PREFERRED_KINDS = ("cbam", "channel", "eca", "spatial", "scale")  # CBAM: a channel and a spatial distribution


@st.fragment
def site_statistics(statistics: list[SiteStatistics]) -> None:
    names = [site.name for site in statistics]
    name = st.radio("Weighting site", names, key="batch-site", horizontal=True)
    site = statistics[names.index(name) if name in names else 0]
    if site.gate_values:
        figure = gate_histogram_figure(site.gate_values, title=f"gate values over {site.images} image(s)")
        st.plotly_chart(figure, key="batch-histogram", config=PLOT_CONFIG)
    else:
        st.caption(f"`{site.name}` ({site.kind}) applies no gate.")
    if site.energy_ratio_mean is None:  # batch_statistics always sets it; an empty batch has no sites
        return
    figure = channel_statistics_figure(
        site.energy_ratio_mean,
        site.channel_gate_mean,
        site.channel_gate_std,
        title=f"{site.name} ({site.kind}) per channel, mean over images",
    )
    st.plotly_chart(figure, key="batch-channels", config=PLOT_CONFIG)
    pictures = [stage for stage in site.mean_stages if stage.layout != "channel"]  # channel: the bars above
    for column, stage in zip(st.columns(max(len(pictures), 1)), pictures):
        title = f"mean {stage_title(stage)} over {site.images} image(s)"
        column.plotly_chart(stage_figure(stage, title=title), key=f"batch-{stage.name}", config=PLOT_CONFIG)


def batch_images(context: DashboardContext) -> list[ImageChoice]:
    """The sidebar's images, and every sample photo not among them when the box is ticked (by
    default only when the sidebar has a single image)."""
    images = list(context.images)
    shown = {image.name for image in images}
    missing = [name for name in SAMPLE_PHOTOS if sample_label(name) not in shown]
    if missing and st.checkbox(
        f"Add the other sample photos ({', '.join(missing)})",
        value=len(images) < 2,
        key="batch-samples",
        help="One image makes no distribution. For statistics over the whole CIFAR-10 test split, "
        "see the Gate statistics view.",
    ):
        images += [sample_choice(name) for name in missing]
    return images


def render(context: DashboardContext) -> None:
    st.header("Batch statistics")
    st.markdown(INTRO)
    if not require_models(context):
        return
    if not context.images:
        st.info("Upload images or pick sample photos in the sidebar; statistics are over all of them.")
        return
    choice = choose_model(context, key="batch-checkpoint", preferred=PREFERRED_KINDS)
    images = batch_images(context)
    analyses = analyses_of(context, choice, images)
    if not analyses or not analyses[0].sites:
        return
    sizes = sorted({analysis.resolution for analysis in analyses})
    at = " and ".join(f"{height}×{width}" for height, width in sizes[:3]) + (" …" if len(sizes) > 3 else "")
    st.caption(f"{len(analyses)} image(s) analysed by **{choice.label}** at {at} px.")
    explain_site(analyses[0].sites[0])
    statistics = guarded(choice.label, lambda: batch_statistics(analyses))
    if statistics is not None:
        site_statistics(statistics)


render(current_context())
