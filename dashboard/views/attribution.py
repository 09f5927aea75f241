"""Attribution view: one image, one model, one captum method: Integrated Gradients, Saliency or
Occlusion on the input image, or Grad-CAM, activation or conductance on both sides of one weighting site,
of the target its task offers (a class; a segmenter's class where it is predicted; one detected box's
score; the sum of one output tensor).

Maps are drawn over the crop the model saw; slow methods show a progress bar (fmw.analysis.attribution's
progress callback) and results are remembered per session; IG also reports its convergence delta. It opens
on the spatial-attention model: its gate decides where the network looks, which is what attribution shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.inputs import DashboardContext, ImageChoice, current_context
from dashboard.predictions import prediction_line, task_of
from dashboard.services import guarded, prepared_image, session_cached
from dashboard.views.common import (
    PNG_NOTE,
    choose_analysis,
    choose_target,
    download,
    explain_site,
    file_stem,
    show_figure,
)
from fmw.analysis import ImageAnalysis, ModelHandle, class_names_of
from fmw.analysis.attribution import (
    ATTRIBUTION_METHODS,
    AttributionMethod,
    InputAttribution,
    LayerAttribution,
    attribute_input,
    attribute_site,
    task_attribution_score,
)
from fmw.analysis.images import postprocess_of
from fmw.analysis.images import task_of as model_task
from fmw.analysis.preparation import model_inputs
from fmw.export import figure_html, npz_bytes
from fmw.figures import attribution_overlay_figure
from fmw.models.tasks import Detection, OtherOutput, Segmentation
from fmw.sites import ModelInputs

if TYPE_CHECKING:
    from fmw.analysis.attribution import Score


AT_A_SITE = " at a site"


def method_label(method: AttributionMethod) -> str:
    """How the Method box names a registered method: its title, "at a site" for a site method."""
    return method.title + (AT_A_SITE if method.at_site else "")


METHODS = {method_label(method): method for method in ATTRIBUTION_METHODS.values()}  # fmw's registry, by label
INTRO = (
    "Which pixels (or, at a site, which positions) made the model choose a class. Input methods colour every pixel "
    "of the crop the model saw by how much it pushed the target class up (red) or down (blue); site methods show "
    "the same on both sides of one weighting layer, **before** and **after** its gate, so you can see what the "
    "gate added or took away."
)
PREFERRED_KINDS = ("spatial", "cbam", "channel", "eca", "scale")  # the spatial gate decides where the model looks
TASK_TARGETS = {
    "classification": "Target class",
    "segmentation": "Target class (its logits summed where it is predicted)",
    "detection": "Target box (its score, matched by IoU in every pass)",
    "other": "Target output tensor (its sum)",
}
SHOWN_BOXES = 20
METHOD_HELP = (
    "Input methods attribute the target's logit to every pixel. Site methods show it on the input side "
    "(before weighting) and output side (after weighting) of one weighting site.\n\n"
    + "\n".join(f"- **{label}**: {method.description}." for label, method in METHODS.items())
)


@dataclass(frozen=True)
class Target:
    """What to attribute: column ``target`` of the task's score, fixed by ``box`` (detection) or
    ``tensor`` (other); ``words`` name it in titles."""

    target: int
    words: str
    box: int = 0
    tensor: int = 0


def choose_task_target(analysis: ImageAnalysis, class_names: list[str], key: str) -> Target | None:
    """A select box over what the task can attribute; None, with a note, when there is nothing."""
    outcome = analysis.task_prediction
    label = TASK_TARGETS[task_of(analysis)]
    if isinstance(outcome, Segmentation):
        shares = {index: f"{name} ({share:.1%} of the image)" for index, name, share in outcome.shares}
        index = st.selectbox(label, list(shares), key=key, format_func=shares.__getitem__)
        return Target(index, f"{class_names[index]} where it is predicted")
    if isinstance(outcome, Detection):
        boxes = list(range(min(len(outcome.scores), SHOWN_BOXES)))
        if not boxes:
            st.info("The detector found no box in this image, so there is no box score to attribute.")
            return None
        words = [f"box {b + 1}: {outcome.names[b]} {outcome.scores[b]:.1%}" for b in boxes]
        box = st.selectbox(label, boxes, key=key, format_func=words.__getitem__)
        return Target(0, words[box], box=box)
    if isinstance(outcome, OtherOutput):
        shapes = outcome.shapes or [()]
        tensor = st.selectbox(
            label, list(range(len(shapes))), key=key, format_func=lambda t: f"tensor {t} {tuple(shapes[t])}"
        )
        return Target(0, f"the sum of output tensor {tensor}", tensor=tensor)
    predicted = analysis.predictions[0].index
    target = choose_target(class_names, predicted, key=key)
    return Target(target, class_names[target])


def compute(
    model: ModelHandle, inputs: ModelInputs, method: AttributionMethod, site: str | None, target: Target, steps: int
) -> InputAttribution | LayerAttribution:
    score: Score = task_attribution_score(
        model.model,
        inputs,
        model_task(model),
        postprocess=postprocess_of(model),
        box=target.box,
        tensor=target.tensor,
    )
    progress = st.progress(0.0, text="Attributing…")

    def report(fraction: float) -> None:
        progress.progress(fraction, text=f"Attributing… {fraction:.0%}")

    options: dict[str, Any] = {"target": target.target, "score": score, "n_steps": steps, "internal_batch_size": steps}
    result: InputAttribution | LayerAttribution
    if method.at_site:
        if site is None:
            raise ValueError(f"{method.name} needs a weighting site; choose one")
        result = attribute_site(model.model, inputs, site, method.name, progress=report, **options)
    else:
        result = attribute_input(model.model, inputs, method.name, progress=report, **options)
    progress.empty()
    return result


def figures_of(
    result: InputAttribution | LayerAttribution, crop: np.ndarray, picture: np.ndarray, label: str, title: str
) -> dict[str, go.Figure]:
    """Input attributions over ``picture`` (the image as given to the model), site ones over ``crop``
    (what the maps cover)."""
    if isinstance(result, InputAttribution):
        return {"input": attribution_overlay_figure(picture, result.maps[0], title=f"{label}: {title}")}
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
    context: DashboardContext, choice: ModelChoice, model: ModelHandle, analysis: ImageAnalysis, image: ImageChoice
) -> None:
    controls = st.columns([3, 3, 3, 3, 2], vertical_alignment="bottom")
    whole = model.preprocessing.whole_image
    default = "saliency" if whole else "integrated_gradients"  # a detector's one-pass method by default
    names = [method.name for method in METHODS.values()]
    label = controls[0].selectbox(
        "Method", list(METHODS), index=names.index(default), key="attribution-method", help=METHOD_HELP
    )
    method = METHODS[label]
    class_names = class_names_of(model)
    with controls[1]:
        target = choose_task_target(analysis, class_names, key=f"attribution-target-{choice.key}")
    if target is None:
        return
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
    key = (choice.cache_key, image.digest, context.resolution, context.device, method.name, site, target, steps)
    inputs = model_inputs(model, [prepared_image(choice.cache_key, image.digest, context.resolution, model, image.rgb)])
    result = guarded(
        choice.label, lambda: session_cached(key, lambda: compute(model, inputs, method, site, target, steps))
    )
    if result is None:
        return
    title = f"{method.title} for {target.words}" + (f" at {site}" if site else "")
    figures = figures_of(result, analysis.crop, image.rgb if whole else analysis.crop, choice.label, title)
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
    if whole and isinstance(result, InputAttribution):
        st.caption("Input attributions of a detector lie over your whole image, as the detector was given it.")
    st.caption("Red: towards the target; blue: against it. Hover a cell for its position and value. " + PNG_NOTE)
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
    st.caption(
        f"**{choice.label}** ({task_of(analysis)}) predicts {prediction_line(analysis, count=1)} at "
        f"{analysis.resolution[0]}×{analysis.resolution[1]} px."
    )
    if model.preprocessing.whole_image:
        st.caption(
            "A detector runs once per step of Integrated Gradients and conductance, and many times for Occlusion: "
            "they are slow on a CPU; Saliency and Grad-CAM take one pass."
        )
    if analysis.sites:
        explain_site(analysis.sites[0])
    attribution_panel(context, choice, model, analysis, image)


render(current_context())
