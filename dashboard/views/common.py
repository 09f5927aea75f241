"""Pieces several views draw: the image-and-model choice with its analysis (cached, errors reported
per model), a progress bar over the models, the predictions table, the target-class choice, the
words on a weighting kind (formula, paper, what before / gate / after are), the figure provenance
tag and downloads."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import plotly.graph_objects as go
import streamlit as st

from dashboard.catalog import ModelChoice
from dashboard.figure_canvas import canvas_payload
from dashboard.inputs import (
    DashboardContext,
    ImageChoice,
    choose_image,
    choose_model,
    open_model,
    require_models,
)
from dashboard.model_picker import opened_model
from dashboard.services import guarded, image_analysis, session_cached
from fmw.analysis import (
    ImageAnalysis,
    ModelHandle,
    Prediction,
    SiteSummary,
    batch_gate_statistics,
    class_names_of,
)
from fmw.analysis.stats import GateStatistics
from fmw.export import FIGURE_CONFIG, analysis_arrays, figure_html, gates_csv, npz_bytes
from fmw.layers.descriptions import AFTER, BEFORE, describe_kind

PLOT_CONFIG = FIGURE_CONFIG
PNG_NOTE = "PNG: the camera button in each chart's toolbar saves it as an image."
EXPLORE_REQUEST_KEY = "fmw_explore_request"  # (model label, site name) the Layer explorer should open on


def analysis_of(context: DashboardContext, choice: ModelChoice, image: ImageChoice) -> ImageAnalysis | None:
    """The cached analysis of ``image`` by ``choice``; None after showing why it failed."""
    if open_model(context, choice) is None:
        return None
    run = guarded(
        choice.label,
        lambda: image_analysis(
            choice.cache_key,
            image.digest,
            context.resolution,
            context.device,
            lambda device: opened_model(choice, device),
            image.rgb,
            choice.label,
        ),
    )
    if run is None:
        return None
    if run.notice:
        st.warning(f"{choice.label}: {run.notice}")
    return run.value[0]


@dataclass(frozen=True)
class Selection:
    """What a one-image, one-model view works on."""

    image: ImageChoice
    choice: ModelChoice
    model: ModelHandle
    analysis: ImageAnalysis


def loading_progress(models: Sequence[ModelChoice], verb: str) -> Iterator[ModelChoice]:
    """``models`` one by one under a progress bar naming the one in hand (a fresh server loads each
    model on first use), removed once all are done."""
    bar = st.progress(0.0, text=f"{verb} the models…")
    for done, choice in enumerate(models):
        bar.progress(done / len(models), text=f"{verb} {choice.label} ({done + 1} of {len(models)})…")
        yield choice
    bar.empty()


def choose_analysis(context: DashboardContext, key: str, preferred: Sequence[str] = ()) -> Selection | None:
    """Image and model select boxes side by side (keys ``<key>-image``, ``<key>-checkpoint``), then
    the model's analysis of the image; None after saying why there is none. ``preferred``: the
    weighting kinds to preselect, in order (see ``choose_model``)."""
    if not require_models(context):
        return None
    image_column, model_column = st.columns(2)
    with image_column:
        image = choose_image(context, key=f"{key}-image")
    with model_column:
        choice = choose_model(context, key=f"{key}-checkpoint", preferred=preferred)
    if image is None:
        return None
    model = open_model(context, choice)
    if model is None:
        return None
    analysis = analysis_of(context, choice, image)
    return None if analysis is None else Selection(image, choice, model, analysis)


def analyses_of(context: DashboardContext, choice: ModelChoice, images: Sequence[ImageChoice]) -> list[ImageAnalysis]:
    """``analysis_of`` each of ``images`` under a progress bar (removed when done): the analyses every
    view shares, one forward pass per model and image; those that failed are left out after saying why."""
    progress = st.progress(0.0, text="Analysing images…")
    analyses = []
    for done, image in enumerate(images, start=1):
        analysis = analysis_of(context, choice, image)
        if analysis is not None:
            analyses.append(analysis)
        progress.progress(done / len(images), text=f"Analysed {done} of {len(images)} images")
    progress.empty()
    return analyses


def sidebar_statistics(context: DashboardContext, choice: ModelChoice, model: ModelHandle) -> GateStatistics | None:
    """Gate statistics of ``model`` over every image in the sidebar, grouped by predicted class
    (uploads have no labels), from the images' analyses (``fmw.analysis.batch_gate_statistics``);
    remembered per session. None after saying why no image could be analysed."""
    key = (
        "statistics",
        choice.cache_key,
        tuple(image.digest for image in context.images),
        context.resolution,
        context.device,
    )

    def compute() -> GateStatistics | None:
        analyses = analyses_of(context, choice, context.images)
        return batch_gate_statistics(analyses, class_names_of(model), source=choice.label) if analyses else None

    return session_cached(key, compute)


def predictions_table(predictions: list[Prediction]) -> str:
    """Markdown table of the top predictions, most probable first (a short header: six of these sit side
    by side on the Compare page)."""
    rows = [f"| {p.class_name} | {p.probability:.1%} |" for p in predictions]
    return "\n".join(["| class | p |", "| --- | ---: |", *rows])


def choose_target(class_names: Sequence[str], predicted: int, key: str) -> int:
    """A select box over the class names, the predicted class preselected; returns the class index."""
    indices = list(range(len(class_names)))
    return st.selectbox(
        "Target class",
        indices,
        index=predicted,
        key=key,
        format_func=lambda i: f"{class_names[i]}{' (predicted)' if i == predicted else ''}",
    )


def show_figure(figure: go.Figure, image: ImageChoice, key: str, *, streamlit_theme: bool = True) -> None:
    """Draw ``figure``, tagged (layout.meta) with the image it shows, so exports and browser
    tests can tell which image a chart belongs to. ``streamlit_theme=False`` draws it as styled
    in fmw: about half the browser's work per chart (measured with six Compare columns)."""
    figure.update_layout(meta={"image": image.name})
    st.plotly_chart(figure, key=key, config=PLOT_CONFIG, theme="streamlit" if streamlit_theme else None)


Kept = TypeVar("Kept")


def kept_for_image(
    store: str, image: ImageChoice, key: tuple, analysis: ImageAnalysis, build: Callable[[], Kept]
) -> Kept:
    """What ``build()`` makes for ``analysis`` (figures, mostly), kept in this session's state under
    ``store`` (one per view) by ``key`` for the session's current image: a widget change that only
    redraws finds it there. Only the current image's entries are kept: another image (or resolution,
    or device) drops them, so they never outgrow the analyses they are made from. Each entry keeps its
    analysis beside it, so that a key naming ``id(analysis)`` never finds what was made from another
    analysis that had the same id. Callers never change what they get."""
    current = (image.digest, image.name)
    held, entries = st.session_state.get(store, (None, {}))
    if held != current:
        entries = {}
        st.session_state[store] = (current, entries)
    entry = entries.get(key)
    if entry is None or entry[0] is not analysis:
        entry = entries[key] = (analysis, build())
    return entry[1]


def canvas_figure(figure: go.Figure, image: ImageChoice) -> tuple[go.Figure, dict]:
    """``figure`` tagged with ``image`` (``layout.meta``), and what the canvas is sent for it."""
    figure.update_layout(meta={"image": image.name})
    return figure, canvas_payload(figure)


def file_stem(*parts: str) -> str:
    """A file name stem from display names: letters, digits, dots and dashes only."""
    return "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", part).strip("_") for part in parts)


def download(label: str, make: Callable[[], bytes | str], file_name: str, mime: str, key: str) -> None:
    """A download button whose file is made only when clicked (no rerun on click)."""
    st.download_button(
        label, data=make, file_name=file_name, mime=mime, key=key, on_click="ignore", icon=":material/download:"
    )


def analysis_downloads(
    analysis: ImageAnalysis,
    figure: go.Figure | Callable[[], go.Figure],
    stem: str,
    key: str,
    *,
    side_by_side: bool = True,
) -> None:
    """Gates (CSV), captured tensors (NPZ) and ``figure`` (HTML; or what makes it, called only when
    the download is clicked) of one analysis: in a row, or stacked when the caller is already a narrow
    column (labels would be cut off)."""
    places = st.columns(3) if side_by_side else [st.container(), st.container(), st.container()]
    with places[0]:
        download("Gates (CSV)", lambda: gates_csv(analysis.sites), f"{stem}-gates.csv", "text/csv", f"{key}-csv")
    with places[1]:
        download(
            "Tensors (NPZ)",
            lambda: npz_bytes(analysis_arrays(analysis)),
            f"{stem}-tensors.npz",
            "application/octet-stream",
            f"{key}-npz",
        )
    with places[2]:
        made = figure if isinstance(figure, go.Figure) else None
        download("Figure (HTML)", lambda: figure_html(made or figure()), f"{stem}.html", "text/html", f"{key}-html")


def explain_kind(kind: str, stages: Sequence[str] = ()) -> None:
    """What a site of ``kind`` does, for a reader new to it: its formula, what its gate is, what
    before and after are, and its paper."""
    description = describe_kind(kind, tuple(stages))
    paper = f" Paper: [{description.paper}]({description.url})." if description.url else ""
    with st.container(border=True):
        st.markdown(
            f"`{kind}` · {description.title}: `{description.formula}`  \n"
            f"**Before**: {BEFORE}. **Gate**: {description.gate} **After**: {AFTER}.{paper}"
        )


def explain_site(site: SiteSummary) -> None:
    """``explain_kind`` for one site, then its stages with their layouts and, in words, what fmw could
    not tie back to the site's map (each stage's frame note)."""
    explain_kind(site.kind, tuple(site.gates))
    if site.stages:
        st.caption("Stages: " + ", ".join(f"`{stage.name}` ({stage.layout} gate)" for stage in site.stages))
    for note in site.frame_notes:
        st.caption(f"Note: {note}")


def kind_glossary(kinds: Sequence[str]) -> None:
    """The formula, gate and paper of every kind in ``kinds``, one line each (the Compare view's key)."""
    lines = []
    for kind in kinds:
        description = describe_kind(kind)
        paper = f" [{description.paper}]({description.url})" if description.url else ""
        lines.append(f"- `{kind}` · {description.title}: `{description.formula}`. {description.gate}{paper}")
    st.markdown("\n".join(["What each kind of layer computes (x: before, y: after):", *lines]))
