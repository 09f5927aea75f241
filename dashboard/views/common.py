"""Pieces several views draw: the predictions table, the analysed crop, a checkpoint's analysis
of an image (cached, errors reported per checkpoint), and the figure provenance tag."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard.inputs import CheckpointChoice, DashboardContext, ImageChoice
from dashboard.services import guarded, image_analysis
from fmw.analysis import ImageAnalysis, Prediction

PLOT_CONFIG = {"displaylogo": False}


def analysis_of(context: DashboardContext, checkpoint: CheckpointChoice, image: ImageChoice) -> ImageAnalysis | None:
    """The cached analysis of ``image`` by ``checkpoint``; None after showing why it failed."""
    return guarded(
        checkpoint.name,
        lambda: image_analysis(
            checkpoint.path, checkpoint.version, image.digest, context.resolution, context.device, image.rgb
        ),
    )


def predictions_table(predictions: list[Prediction]) -> str:
    """Markdown table of the top predictions, most probable first."""
    rows = [f"| {p.class_name} | {p.probability:.1%} |" for p in predictions]
    return "\n".join(["| class | probability |", "| --- | ---: |", *rows])


def show_figure(figure: go.Figure, image: ImageChoice, key: str) -> None:
    """Draw ``figure``, tagged (layout.meta) with the image it shows, so exports and browser
    tests can tell which image a chart belongs to."""
    figure.update_layout(meta={"image": image.name})
    st.plotly_chart(figure, key=key, config=PLOT_CONFIG)
