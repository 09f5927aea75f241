"""What a model predicted, shown as its task reads its output (``fmw.models.tasks``): a classifier's
top-5 table, a detector's boxes on the user's image above a score threshold, a segmenter's mask over
the image it saw with each class's share, or an uninterpreted output's structure; and in one line."""

from __future__ import annotations

import streamlit as st

from dashboard.inputs import ImageChoice
from dashboard.views.common import predictions_table, show_figure
from fmw.analysis import ImageAnalysis
from fmw.figures.tasks import detection_figure, segmentation_figure
from fmw.models.tasks import Detection, OtherOutput, Segmentation, TopK

DEFAULT_THRESHOLD = 0.5
THRESHOLD_HELP = (
    "Boxes scoring at least this are drawn. torchvision's detectors drop boxes under 0.05 themselves; "
    "random weights score every box at about 1 / classes."
)


def task_of(analysis: ImageAnalysis) -> str:
    """The task of the model behind ``analysis`` (an analysis without a task prediction classifies)."""
    return "classification" if analysis.task_prediction is None else analysis.task_prediction.task


def prediction_line(analysis: ImageAnalysis, threshold: float = DEFAULT_THRESHOLD, count: int = 3) -> str:
    """The prediction in a few words: top classes, the largest classes of the mask, the best boxes,
    or the output's structure."""
    outcome = analysis.task_prediction
    if outcome is None or isinstance(outcome, TopK):
        return ", ".join(f"{p.class_name} {p.probability:.1%}" for p in analysis.predictions[:count])
    if isinstance(outcome, Detection):
        outcome = outcome.at_least(threshold)
    return "; ".join(outcome.lines()[:count])


def shares_table(segmentation: Segmentation) -> str:
    """Markdown table of each predicted class's share of the image, largest first."""
    rows = [f"| {name} | {share:.1%} |" for _, name, share in segmentation.shares]
    return "\n".join(["| class | share |", "| --- | ---: |", *rows])


def show_prediction(
    analysis: ImageAnalysis, image: ImageChoice, key: str, threshold: float = DEFAULT_THRESHOLD
) -> None:
    """``analysis``'s prediction as its task shows it; figures keyed ``<key>-boxes`` / ``<key>-mask``."""
    outcome = analysis.task_prediction
    if isinstance(outcome, Detection):
        shown = outcome.at_least(threshold)
        height, width = image.rgb.shape[:2]
        figure = detection_figure(image.rgb, shown, title=f"boxes ≥ {threshold:.0%}", height=240)
        show_figure(figure, image, f"{key}-boxes", streamlit_theme=False)
        st.caption(
            f"{len(shown.scores)} of {len(outcome.scores)} box(es) score {threshold:.0%} or more, drawn on your "
            f"image ({width}×{height} px)."
        )
        st.markdown(_boxes_table(shown))
    elif isinstance(outcome, Segmentation):
        figure = segmentation_figure(analysis.crop, outcome, title="predicted classes", height=300)
        show_figure(figure, image, f"{key}-mask", streamlit_theme=False)
        st.markdown(shares_table(outcome))
    elif isinstance(outcome, OtherOutput):
        st.caption("fmw does not interpret this output (no task matches it); its structure:")
        st.code(outcome.structure, language=None)
    else:
        st.markdown(predictions_table(analysis.predictions))


def _boxes_table(detection: Detection, rows: int = 5) -> str:
    """The best ``rows`` boxes: label and score."""
    lines = [
        f"| {name} | {score:.1%} |" for name, score in zip(detection.names[:rows], detection.scores[:rows], strict=True)
    ]
    return "\n".join(["| box | score |", "| --- | ---: |", *lines]) if lines else ""
