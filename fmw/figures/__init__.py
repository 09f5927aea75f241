"""Plotly figures, by what they show: a site's maps and gates (``sites``), its stages whatever their
layouts (``stages``, each layout drawn as ``layouts`` says), attributions, gate statistics, models
and predictions; ``style`` holds the shared colour scales."""

from __future__ import annotations

from fmw.figures.attribution import (
    attribution_overlay_figure,
    attribution_rows_figure,
    weighting_off_figure,
)
from fmw.figures.models import model_cards_figure, predictions_figure
from fmw.figures.sites import (
    Montage,
    channel_gate_figure,
    explorer_grids_figure,
    feature_grid_figure,
    montage,
    spatial_gate_figure,
    spatial_overlay_figure,
)
from fmw.figures.stages import site_column_figure, stage_figure, stage_title
from fmw.figures.statistics import (
    channel_statistics_figure,
    class_gate_heatmap_figure,
    gate_histogram_figure,
    specificity_figure,
)
from fmw.figures.style import symmetric_limit

__all__ = [
    "Montage",
    "attribution_overlay_figure",
    "attribution_rows_figure",
    "channel_gate_figure",
    "channel_statistics_figure",
    "class_gate_heatmap_figure",
    "explorer_grids_figure",
    "feature_grid_figure",
    "gate_histogram_figure",
    "model_cards_figure",
    "montage",
    "predictions_figure",
    "site_column_figure",
    "spatial_gate_figure",
    "spatial_overlay_figure",
    "specificity_figure",
    "stage_figure",
    "stage_title",
    "symmetric_limit",
    "weighting_off_figure",
]
