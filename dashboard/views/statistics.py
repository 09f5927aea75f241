"""Gate statistics: per site and predicted class, the mean channel (or spatial) gate over the sidebar's
images as a class x channel heatmap, and how class-specific each site is by depth; a JSON file from
``python -m fmw stats`` (dataset-level, grouped by true label) can be uploaded and shown alongside."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from dashboard.inputs import DashboardContext, choose_model, current_context, open_model, require_models
from dashboard.services import guarded
from dashboard.views.common import PLOT_CONFIG, sidebar_statistics
from fmw.analysis.stats import GateStatistics
from fmw.figures import class_gate_heatmap_figure, specificity_figure

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
            title=f"{statistics.source}: mean {stage.stage} gate per class at {site.name}",
        )
        st.plotly_chart(figure, key=f"{key}-{stage.stage}", config=PLOT_CONFIG)


def render(context: DashboardContext) -> None:
    st.header("Gate statistics")
    st.info(GROUPING_NOTE)
    if not require_models(context):
        return
    if not context.images:
        st.info("Upload images or pick sample photos in the sidebar; statistics are over all of them.")
        return
    choice = choose_model(context, key="statistics-checkpoint", prefer_weighted=True)
    model = open_model(context, choice)
    if model is None:
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
        st.caption(
            "0: every class gets the same gate profile; about 1: the gate is set by the class "
            "(definition in fmw/stats.py)."
        )
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


render(current_context())
