"""Gate statistics. First what the shipped checkpoints show: their test-split statistics, shipped beside
them (``fmw.analysis.findings``): class specificity by depth of every kind and gate stage side by side,
the depth trend in words next to the SE paper's finding, and one model's mean gate per class at every
site. Then the same over the sidebar's images, grouped by predicted class, with a JSON file from
``python -m fmw stats`` (dataset-level, grouped by true label) uploaded alongside.

The page opens on the model whose channel gate's class specificity rises most from its first site to
its last in those statistics (``fmw.analysis.findings.steepest_rise``): the clearest instance of the
SE paper's finding, which is about channel gates; without one, on the first model with weighting."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.inputs import DashboardContext, choose_model, current_context, open_model, require_models
from dashboard.services import guarded, shipped
from dashboard.views.common import PLOT_CONFIG, explain_kind, sidebar_statistics
from fmw.analysis.findings import (
    ShippedStatistics,
    SpecificitySeries,
    depth_finding,
    regenerate_command,
    specificity_series,
    statistics_scope,
    steepest_rise,
)
from fmw.analysis.images import task_of
from fmw.analysis.layouts import StageSummary
from fmw.analysis.stats import GateStatistics
from fmw.figures import class_gate_heatmap_figure, specificity_figure, stage_figure

INTRO = (
    "A gate is **class-specific** when its values depend on the class of the image: 0 means every class gets the "
    "same gate profile, about 1 that the class alone sets it. First, what the shipped checkpoints show over the "
    "images their statistics were made from; below, the same for your own images."
)
SPECIFICITY_NOTE = (
    "0: every class gets the same gate profile; about 1: the gate is set by the class "
    "(definition in fmw/analysis/stats.py)."
)
GROUPING_NOTE = (
    "Uploaded images carry no labels, so they are grouped by the class the model **predicts**; with a few "
    "images most classes are empty and the specificity is noisy. Dataset-level statistics, grouped by true "
    "label, come from `python -m fmw stats CHECKPOINT --data ... --out stats.json`: upload that file below."
)


def statistics_file() -> GateStatistics | None:
    upload = st.file_uploader(
        "Statistics from `python -m fmw stats` (JSON, optional)", type=["json"], key="statistics-file"
    )
    if upload is None:
        return None

    def read() -> GateStatistics:
        try:
            data = json.loads(upload.getvalue())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"not JSON ({error}); upload the --out file of python -m fmw stats") from None
        return GateStatistics.from_json(data)

    return guarded(upload.name, read)


def shipped_of(context: DashboardContext) -> dict[str, ShippedStatistics]:
    """The shipped statistics of every selected checkpoint file, by model label."""
    return {choice.label: shipped(choice.path, choice.version) for choice in context.models if choice.origin == "file"}


def findings(found: dict[str, ShippedStatistics]) -> list[SpecificitySeries]:
    """Specificity by depth of every shipped kind and stage side by side, and the finding in words;
    returns the series drawn."""
    available = {label: item.statistics for label, item in found.items() if item.statistics is not None}
    missing = [item.problem for item in found.values() if item.problem]
    if not available:
        st.info(
            "None of the selected checkpoints has shipped statistics, so there are no findings to show yet"
            + (": see below for why, and the command that makes them." if missing else "; select checkpoint files.")
        )
        for problem in missing:
            st.caption(problem)
        return []
    series = [line for label, statistics in available.items() for line in specificity_series(statistics, label)]
    images = " / ".join(f"{count:,}" for count in sorted({statistics.images for statistics in available.values()}))
    figure = specificity_figure(
        {line.label: (line.depths, line.values, line.sites) for line in series},
        title=f"class specificity by depth, shipped checkpoints ({images} test images)",
        height=360,
    )
    st.plotly_chart(figure, key="findings-specificity", config=PLOT_CONFIG)
    st.markdown(depth_finding(series))
    st.caption(f"{SPECIFICITY_NOTE} Shipped beside the checkpoints as `stats/<name>.json`, made by `fmw stats`.")
    for problem in missing:
        st.caption(problem)
    return series


def shipped_heatmaps(choice: ModelChoice, found: dict[str, ShippedStatistics]) -> None:
    """The chosen checkpoint's mean gate per true class at every site, side by side."""
    item = found.get(choice.label)
    if item is None or item.statistics is None:
        why = "it is not a checkpoint file" if item is None else "see above for why"
        st.caption(f"No shipped statistics for {choice.label} ({why}).")
        return
    statistics = item.statistics
    gated = [site for site in statistics.sites if site.stages]
    if not gated:
        st.caption(f"{choice.label} applies no gate at any site: there is nothing to average.")
        return
    st.markdown(
        f"Mean gate per class at each site of **{choice.label}** ({statistics_scope(statistics)}). "
        "Hover a cell for the class, the channel (or position) and the mean gate, and how far it is from the mean "
        "over all classes."
    )
    panels = [(site, stage) for site in gated for stage in site.stages.values()]
    for start in range(0, len(panels), 3):
        for column, (site, stage) in zip(st.columns(3), panels[start : start + 3]):
            specificity = "n/a" if stage.specificity is None else f"{stage.specificity:.2f}"
            figure = class_gate_heatmap_figure(
                stage.class_mean,
                statistics.class_names,
                stage=stage.stage,
                shape=stage.shape,
                axes=stage.axes,
                title=f"{site.name}: {stage.label} (specificity {specificity})",
            )
            column.plotly_chart(figure, key=f"findings-heatmap-{site.name}-{stage.stage}", config=PLOT_CONFIG)
    st.caption(f"Remake these statistics with `{regenerate_command(item.checkpoint)}`.")


@st.fragment
def site_heatmaps(statistics: GateStatistics, key: str) -> None:
    gated = [site for site in statistics.sites if site.stages]
    if not gated:
        st.caption("No site applies a gate.")
        return
    names = [site.name for site in gated]
    name = st.selectbox("Weighting site", names, key=f"{key}-site")
    site = gated[names.index(name) if name in names else 0]
    present = [index for index, count in enumerate(statistics.class_counts) if count > 0]
    labels = [f"{statistics.class_names[index]} ({statistics.class_counts[index]})" for index in present]
    specificity = "n/a (needs two classes)" if site.specificity is None else f"{site.specificity:.3f}"
    st.caption(
        f"`{site.name}` · {site.kind} · {site.channels} channels at {site.resolution[0]}×{site.resolution[1]} · "
        f"class specificity {specificity}. Rows: classes with images (count in brackets)."
    )
    for stage in site.stages.values():
        figure = class_gate_heatmap_figure(
            stage.class_mean[present],
            labels,
            stage=stage.stage,
            shape=stage.shape,
            axes=stage.axes,
            title=f"{statistics.source}: mean {stage.label} per class at {site.name}",
        )
        st.plotly_chart(figure, key=f"{key}-{stage.stage}", config=PLOT_CONFIG)
        if stage.gate_mean is not None:
            whole = StageSummary(stage.stage, stage.layout, stage.gate_mean.astype("float32"))
            title = f"dataset-mean {stage.stage} gate over all classes ({stage.layout})"
            st.plotly_chart(stage_figure(whole, title=title, height=360), key=f"{key}-{stage.stage}-mean")


def your_images(context: DashboardContext, choice: ModelChoice) -> None:
    """The chosen model over the sidebar's images (by predicted class) and an uploaded statistics file."""
    st.subheader("Your images")
    st.info(GROUPING_NOTE)
    if not context.images:
        st.info("Upload images or pick sample photos in the sidebar; statistics are over all of them.")
        return
    model = open_model(context, choice)
    if model is None:
        return
    task = task_of(model)
    if task != "classification":
        st.info(
            f"{choice.label} is a {task} model: it predicts no single class per image, so its gates cannot be "
            "grouped by predicted class here. Group them by folder instead: `fmw stats MODEL --data FOLDER --out "
            "stats.json` (one subfolder per group), then upload that file below. Batch statistics shows its gate "
            "distributions over the sidebar's images."
        )
        uploaded = statistics_file()
        if uploaded is not None:
            site_heatmaps(uploaded, "statistics-heatmap")
        return
    statistics = guarded(choice.label, lambda: sidebar_statistics(context, choice, model))
    uploaded = statistics_file()
    if statistics is None:
        return
    st.caption(
        f"{statistics.images} image(s) through **{choice.label}**, "
        f"{int((statistics.class_counts > 0).sum())} predicted class(es)."
    )
    series_name, series = f"{choice.label} (sidebar images)", {}
    own = statistics.specificity_by_depth()
    if len(own[0]):
        series[series_name] = own
    else:
        st.info(
            f"{choice.label} has no weighting site with a gate, so it has no gate statistics; pick a model "
            "with weighting layers."
        )
    if uploaded is not None:
        series[f"{uploaded.source} ({uploaded.images} images, by {uploaded.grouping})"] = (
            uploaded.specificity_by_depth()
        )
    undefined = [name for name, (_, values, _) in series.items() if not np.isfinite(values).any()]
    if len(undefined) < len(series):
        defined = {name: values for name, values in series.items() if name not in undefined}
        st.plotly_chart(specificity_figure(defined), key="statistics-specificity", config=PLOT_CONFIG)
        st.caption(SPECIFICITY_NOTE)
    if undefined:
        note = (
            "Class specificity compares the gates of different classes, so it needs images of at least two "
            f"classes; not drawn for {'; '.join(undefined)}."
        )
        if series_name in undefined:
            predicted = [name for name, count in zip(statistics.class_names, statistics.class_counts) if count]
            note += (
                f" The sidebar's {statistics.images} image(s) are all predicted {', '.join(predicted)}: add "
                "images of other classes, or upload statistics of a labelled split (above)."
            )
        st.info(note)
    sources = {"sidebar images": statistics, **({"uploaded file": uploaded} if uploaded is not None else {})}
    source = st.radio("Heatmaps of", list(sources), key="statistics-source", horizontal=True)
    site_heatmaps(sources[source], "statistics-heatmap")


def render(context: DashboardContext) -> None:
    st.header("Gate statistics")
    st.markdown(INTRO)
    if not require_models(context):
        return
    st.subheader("What the shipped checkpoints show")
    found = shipped_of(context)
    scopes = sorted({statistics_scope(item.statistics) for item in found.values() if item.statistics is not None})
    if scopes:
        st.caption(f"Their statistics files say what they average over: {'; '.join(scopes)}.")
    opening = steepest_rise(findings(found))
    first = next((choice.key for choice in context.models if opening and choice.label == opening.model), None)
    choice = choose_model(context, key="statistics-checkpoint", first=first)
    if opening is not None and choice.key == first:
        st.caption(
            f"Opens on {choice.label}: of the shipped channel gates (one value per channel, as in the SE paper's "
            f"analysis), its class specificity rises most from the first site to the last ({opening.numbers})."
        )
    if choice.weighting:
        explain_kind(choice.weighting)
    shipped_heatmaps(choice, found)
    your_images(context, choice)


render(current_context())
