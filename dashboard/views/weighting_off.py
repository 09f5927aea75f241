"""Weighting off: one image, one model, chosen weighting sites switched off one at a time and all
together (gate replaced by 1, or by its mean over the sidebar's images): how the top-5, the target's
probability and, optionally, the input attribution change, site by site; for a segmenter, detector or
other model, the output compared as its task does (``fmw.analysis.attribution.compare_task_weighting_off``).
It opens on the checkpoint that loses most accuracy without its weighting (as its header records it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.inputs import DashboardContext, ImageChoice, current_context
from dashboard.predictions import task_of
from dashboard.services import guarded, prepared_image, session_cached
from dashboard.views.common import (
    choose_analysis,
    choose_target,
    explain_site,
    show_figure,
    sidebar_statistics,
)
from fmw.analysis import ImageAnalysis, ModelHandle, class_names_of
from fmw.analysis.ablation import (
    AttributionRow,
    TaskWeightingOff,
    WeightingOffComparison,
    attributions_with_weighting_off,
    compare_task_weighting_off,
    compare_weighting_off,
)
from fmw.analysis.attribution import INPUT_METHODS, attribution_method
from fmw.analysis.images import postprocess_of
from fmw.analysis.preparation import model_inputs
from fmw.figures import attribution_rows_figure, weighting_off_figure
from fmw.sites import ModelInputs

if TYPE_CHECKING:
    import torch

INTRO = (
    "What the network does without its weighting: each chosen layer's gate is replaced by 1 (the maps pass "
    "through unchanged, **after** = **before**) or by its average gate, one layer at a time and all together, and "
    "the table shows how the prediction changes. A large drop means the network relies on that gate."
)
REPLACEMENTS = ("1 (weighting off)", "its mean over the sidebar's images")
TASK_MEASURES = {
    "segmentation": "**pixels changed**: the share of pixels whose predicted class changes; **IoU**: per class, "
    "the overlap of its pixels with weighting on and off (1: the same pixels).",
    "detection": "Boxes matched with the same label at IoU ≥ 0.5: **lost** (on, unmatched), **gained** (off, "
    "unmatched), **moved** (matched below IoU 0.9), and the mean **score change** of the matched ones. Every box "
    "the detector returns counts, whatever the Compare view's threshold.",
    "other": "The relative change ‖off − on‖ / ‖on‖ of each output tensor.",
}


def task_table(comparison: TaskWeightingOff, class_names: list[str]) -> list[dict]:
    """The comparison's rows with numbers formatted and per-class IoU named by class."""

    def named(key: str) -> str:
        index = key.removeprefix("IoU class ")
        return f"IoU {class_names[int(index)]}" if index != key and int(index) < len(class_names) else key

    def formatted(key: str, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return f"{value:+.3g}" if key == "mean score change" else f"{value:.3f}"

    return [
        {named(key): value if key == "switched off" else formatted(key, value) for key, value in row.items()}
        for row in comparison.table()
    ]


def task_weighting_off(
    choice: ModelChoice, model: ModelHandle, inputs: ModelInputs, sites: list[str], task: str, class_names: list[str]
) -> None:
    """What switching the chosen sites off changes in a non-classifier's output, as its task measures it."""
    comparison = guarded(
        choice.label,
        lambda: compare_task_weighting_off(model.model, inputs, task, sites=sites, postprocess=postprocess_of(model)),
    )
    if comparison is None:
        return
    st.table(task_table(comparison, class_names))
    st.caption(f"Each row against weighting on, for this {task} model. {TASK_MEASURES[task]}")


def comparison_table(comparison: WeightingOffComparison) -> list[dict]:
    return [
        {
            "switched off": row["switched off"],
            "predicted": row["predicted"],
            f"p({row['target']})": f"{row['p(target)']:.2%}",
            "change": f"{row['change']:+.2%}",
            "top-5": ", ".join(row["top-k"]),
            "prediction changed": "yes" if row["prediction changed"] else "",
        }
        for row in comparison.table(0)
    ]


def attribution_rows(
    choice: ModelChoice,
    model: ModelHandle,
    inputs: torch.Tensor,
    image: ImageChoice,
    sites: list[str],
    gates: dict | None,
    target: int,
    key: tuple,
) -> None:
    methods = {name: attribution_method(name) for name in INPUT_METHODS}
    method = st.selectbox(
        "Attribution method",
        INPUT_METHODS,
        key="off-method",
        format_func=lambda name: methods[name].title,
        help=" ".join(f"{found.title}: {found.description}" for found in methods.values()),
    )
    progress = st.progress(0.0, text="Attributing under every step…")

    def report(fraction: float) -> None:
        progress.progress(fraction)

    def compute() -> list[AttributionRow]:
        return attributions_with_weighting_off(
            model.model,
            inputs,
            method,
            sites=sites,
            mean_gates=gates,
            target=target,
            n_steps=16,
            internal_batch_size=16,
            progress=report,
        )

    rows = guarded(choice.label, lambda: session_cached((*key, method), compute))
    progress.empty()
    if rows is None:
        return
    figure = attribution_rows_figure(
        np.stack([row.attribution.maps[0] for row in rows]),
        [row.label for row in rows],
        title=f"{choice.label}: {attribution_method(method).title} site by site",
    )
    show_figure(figure, image, "off-attributions")


@st.fragment
def weighting_off_panel(
    context: DashboardContext, choice: ModelChoice, model: ModelHandle, analysis: ImageAnalysis, image: ImageChoice
) -> None:
    gated = [site.name for site in analysis.sites if site.gates]
    if not gated:
        st.info(f"{choice.label} has no weighting site with a gate, so there is nothing to switch off.")
        return
    sites = st.multiselect("Sites to switch off", gated, default=gated, key=f"off-sites-{choice.key}")
    task, class_names = task_of(analysis), class_names_of(model)
    if task != "classification":
        st.caption(
            f"For a {task} model the gates are replaced by 1; the mean gate and the attributions site by site "
            "need a classifier (the mean gate comes from statistics grouped by predicted class)."
        )
        if not sites:
            st.info("Choose at least one site to switch off.")
            return
        inputs = model_inputs(
            model, [prepared_image(choice.cache_key, image.digest, context.resolution, model, image.rgb)]
        )
        task_weighting_off(choice, model, inputs, sites, task, class_names)
        return
    controls = st.columns(2)
    replacement = controls[0].radio(
        "Replace each gate by",
        REPLACEMENTS,
        key="off-replacement",
        help="1 removes the weighting; the mean keeps its average effect but not its dependence on this image.",
    )
    with controls[1]:
        target = choose_target(class_names, analysis.predictions[0].index, key=f"off-target-{choice.key}")
    if not sites:
        st.info("Choose at least one site to switch off.")
        return
    gates = None
    if replacement == REPLACEMENTS[1]:
        statistics = guarded(choice.label, lambda: sidebar_statistics(context, choice, model))
        if statistics is None:
            return
        gates = statistics.replacements()
        st.caption(f"Mean gates over the {len(context.images)} image(s) in the sidebar.")
    inputs = prepared_image(choice.cache_key, image.digest, context.resolution, model, image.rgb).inputs
    comparison = guarded(
        choice.label,
        lambda: compare_weighting_off(model.model, inputs, class_names, sites=sites, mean_gates=gates, target=target),
    )
    if comparison is None:
        return
    st.table(comparison_table(comparison))
    rows = comparison.rows
    figure = weighting_off_figure(
        [row.label for row in rows],
        [float(row.target_probability[0]) for row in rows],
        [class_names[int(row.predicted[0])] for row in rows],
        target=class_names[target],
        title=f"{choice.label}: switching weighting off (gate = {comparison.replacement})",
        height=120 + 28 * len(rows),
    )
    show_figure(figure, image, "off-predictions")
    if st.toggle("Attributions site by site", key="off-attribute"):
        key = (
            "weighting off",
            choice.cache_key,
            image.digest,
            context.resolution,
            context.device,
            tuple(sites),
            replacement,
            target,
        )
        attribution_rows(choice, model, inputs, image, sites, gates, target, key)


def preferred_kinds(context: DashboardContext) -> list[str]:
    """Kinds by the test accuracy their checkpoints lose with weighting off, as their headers record it,
    largest first (without such records ``choose_model`` opens on the first model with weighting)."""
    recorded = [choice for choice in context.models if choice.weighting_off_drop is not None]
    ranked = [choice.weighting for choice in sorted(recorded, key=lambda c: -(c.weighting_off_drop or 0.0))]
    return ranked


def render(context: DashboardContext) -> None:
    st.header("Switch weighting off")
    st.markdown(INTRO)
    selection = choose_analysis(context, "off", preferred=preferred_kinds(context))
    if selection is None:
        return
    choice, model, analysis, image = selection.choice, selection.model, selection.analysis, selection.image
    if choice.weighting_off_drop is not None:
        st.caption(
            f"On the test split, {choice.label} loses {100 * choice.weighting_off_drop:.1f} points of top-1 "
            "accuracy with every gate set to 1 (from its checkpoint's header)."
        )
    if analysis.sites:
        explain_site(analysis.sites[0])
    weighting_off_panel(context, choice, model, analysis, image)


render(current_context())
