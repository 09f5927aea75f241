"""Attribution view: one image, one model, one captum method: Integrated Gradients, Saliency or
Occlusion on the input image, or Grad-CAM, activation or conductance on both sides of one weighting site.

Maps are drawn over the crop the model saw; slow methods show a progress bar (fmw.analysis.attribution's
progress callback) and results are remembered per session; IG also reports its convergence delta. It opens
on the spatial-attention model: its gate decides where the network looks, which is what attribution shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.inputs import DashboardContext, ImageChoice, current_context
from dashboard.registry import ModelChoice
from dashboard.services import guarded, session_cached
from dashboard.views.common import (
    PNG_NOTE,
    choose_analysis,
    choose_target,
    download,
    explain_site,
    file_stem,
    show_figure,
)
from fmw.analysis import Analysable, ImageAnalysis, class_names_of, prepare_image
from fmw.analysis.attribution import InputAttribution, LayerAttribution, attribute_input, attribute_site
from fmw.export import figure_html, npz_bytes
from fmw.figures import attribution_overlay_figure

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Method:
    """A method as the page offers it: its fmw name, whether it works at a site, whether it has steps."""

    name: str
    at_site: bool
    stepped: bool


METHODS = {
    "Integrated Gradients": Method("integrated_gradients", False, True),
    "Saliency": Method("saliency", False, False),
    "Occlusion": Method("occlusion", False, False),
    "Grad-CAM at a site": Method("grad_cam", True, False),
    "Activation at a site": Method("activation", True, False),
    "Conductance at a site": Method("conductance", True, True),
}
INTRO = (
    "Which pixels (or, at a site, which positions) made the model choose a class. Input methods colour every pixel "
    "of the crop the model saw by how much it pushed the target class up (red) or down (blue); site methods show "
    "the same on both sides of one weighting layer, **before** and **after** its gate, so you can see what the "
    "gate added or took away."
)
PREFERRED_KINDS = ("spatial", "cbam", "channel", "eca", "scale")  # the spatial gate decides where the model looks
METHOD_HELP = (
    "Input methods attribute the target's logit to every pixel. Site methods show it on the input side "
    "(before weighting) and output side (after weighting) of one weighting site; activation ignores the target."
)


def compute(
    model: Analysable, inputs: torch.Tensor, method: Method, site: str | None, target: int, steps: int
) -> InputAttribution | LayerAttribution:
    progress = st.progress(0.0, text="Attributing…")

    def report(fraction: float) -> None:
        progress.progress(fraction, text=f"Attributing… {fraction:.0%}")

    result: InputAttribution | LayerAttribution
    if method.at_site:
        if site is None:
            raise ValueError(f"{method.name} needs a weighting site; choose one")
        result = attribute_site(
            model.model,
            inputs,
            site,
            method.name,
            target=target,
            n_steps=steps,
            internal_batch_size=steps,
            progress=report,
        )
    else:
        result = attribute_input(
            model.model, inputs, method.name, target=target, n_steps=steps, internal_batch_size=steps, progress=report
        )
    progress.empty()
    return result


def figures_of(
    result: InputAttribution | LayerAttribution, crop: np.ndarray, label: str, title: str
) -> dict[str, go.Figure]:
    if isinstance(result, InputAttribution):
        return {"input": attribution_overlay_figure(crop, result.maps[0], title=f"{label}: {title}")}
    return {
        "before": attribution_overlay_figure(
            crop, result.maps_before[0], title=f"{label}: {title}, input side (before weighting)"
        ),
        "after": attribution_overlay_figure(
            crop, result.maps_after[0], title=f"{label}: {title}, output side (after weighting)"
        ),
    }


@st.fragment
def attribution_panel(
    context: DashboardContext, choice: ModelChoice, model: Analysable, analysis: ImageAnalysis, image: ImageChoice
) -> None:
    controls = st.columns([3, 3, 3, 3, 2], vertical_alignment="bottom")
    method_label = controls[0].selectbox("Method", list(METHODS), key="attribution-method", help=METHOD_HELP)
    method = METHODS[method_label]
    class_names = class_names_of(model)
    with controls[1]:
        target = choose_target(class_names, analysis.predictions[0].index, key=f"attribution-target-{choice.key}")
    site = None
    if method.at_site:
        names = [s.name for s in analysis.sites]
        if not names:
            st.info(f"{choice.label} has no weighting sites; choose an input method.")
            return
        site = controls[2].selectbox("Weighting site", names, key=f"attribution-site-{choice.key}")
    steps = controls[3].select_slider(
        "Steps",
        (8, 16, 32, 64),
        value=16,
        key="attribution-steps",
        disabled=not method.stepped,
        help="Integration steps (Integrated Gradients, conductance): more is slower and more exact.",
    )
    key = (choice.key, image.digest, context.resolution, context.device, method.name, site, target, steps)
    inputs = prepare_image(model, image.rgb, context.resolution).inputs
    result = guarded(
        choice.label, lambda: session_cached(key, lambda: compute(model, inputs, method, site, target, steps))
    )
    if result is None:
        return
    title = f"{method_label.removesuffix(' at a site')} for {class_names[target]}" + (f" at {site}" if site else "")
    figures = figures_of(result, analysis.crop, choice.label, title)
    for column, (side, figure) in zip(st.columns(len(figures)), figures.items()):
        with column:
            show_figure(figure, image, f"attribution-{side}")
    if isinstance(result, InputAttribution) and result.delta is not None:
        delta = float(result.delta[0])
        st.metric(
            "Convergence delta",
            f"{delta:.3g}",
            help="sum(attributions) − (F(image) − F(baseline)): how far the integral is from complete; "
            "more steps make it smaller.",
        )
    st.caption("Red: towards the target class; blue: against it. Hover a cell for its position and value. " + PNG_NOTE)
    stem = file_stem(choice.label, method.name, image.name)
    arrays = {name: value for name, value in vars(result).items() if isinstance(value, np.ndarray)}
    with controls[4].popover("Downloads", icon=":material/download:"):
        download(
            "Attributions (NPZ)",
            lambda: npz_bytes({"crop": analysis.crop, **arrays}),
            f"{stem}.npz",
            "application/octet-stream",
            "attribution-download-npz",
        )
        for side, figure in figures.items():
            download(
                f"Figure {side} (HTML)" if len(figures) > 1 else "Figure (HTML)",
                partial(figure_html, figure),
                f"{stem}-{side}.html",
                "text/html",
                f"attribution-download-{side}",
            )


def render(context: DashboardContext) -> None:
    st.header("Attribution")
    st.markdown(INTRO)
    selection = choose_analysis(context, "attribution", preferred=PREFERRED_KINDS)
    if selection is None:
        return
    choice, model, analysis, image = selection.choice, selection.model, selection.analysis, selection.image
    top = analysis.predictions[0]
    st.caption(
        f"**{choice.label}** predicts **{top.class_name}** ({top.probability:.1%}) at "
        f"{analysis.resolution[0]}×{analysis.resolution[1]} px."
    )
    if analysis.sites:
        explain_site(analysis.sites[0])
    attribution_panel(context, choice, model, analysis, image)


render(current_context())
