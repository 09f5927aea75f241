"""The HTML page of a gate-statistics object: class specificity by depth, then one class x channel
(or class x position) heatmap per site and stage."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from fmw.analysis.stats import GateStatistics
from fmw.export.files import Section
from fmw.figures import class_gate_heatmap_figure, specificity_figure

PAGE_CLASSES = 64  # classes a heatmap shows at most: 1000 ImageNet classes would make a 100-MB page


def shown_classes(count: int, most: int = PAGE_CLASSES) -> np.ndarray:
    """Indices of the classes a page shows: all of them, or ``most`` evenly spaced by index."""
    return np.arange(count) if count <= most else np.unique(np.linspace(0, count - 1, most).round().astype(int))


def statistics_sections(statistics: GateStatistics, label: str = "") -> list[Section]:
    """The figures of one statistics object as page sections: specificity by depth, then one class
    x channel (or class x position) heatmap per site and stage, of at most ``PAGE_CLASSES`` classes
    (evenly spaced by index when there are more; the JSON holds them all)."""
    depths, values, names = statistics.specificity_by_depth()
    rows = shown_classes(len(statistics.class_names))
    row_names = [statistics.class_names[row] for row in rows]
    overview = specificity_figure({label or statistics.source: (depths, values, names)})
    sections = [
        Section(
            "Class specificity by depth",
            [overview],
            notes=[
                (
                    f"{statistics.images} images grouped by {statistics.grouping}; "
                    "0 = class-agnostic, about 1 = set by the class."
                )
            ],
        )
    ]
    if len(rows) < len(statistics.class_names):
        sections[0].notes.append(
            f"The heatmaps show {len(rows)} of the {len(statistics.class_names)} classes, evenly spaced by "
            "class index; the statistics file holds every class."
        )
    for site in statistics.sites:
        figures: list[go.Figure] = [
            class_gate_heatmap_figure(
                stage.class_mean[rows], row_names, stage=stage.stage, shape=stage.shape, axes=stage.axes
            )
            for stage in site.stages.values()
        ]
        specificity = "n/a" if site.specificity is None else f"{site.specificity:.3f}"
        height, width = site.resolution
        notes = [f"{site.kind}, {site.channels} channels at {height}x{width}; specificity {specificity}"]
        if not site.stages:
            notes.append("No gate at this site: nothing to average.")
        sections.append(Section(f"Site {site.name}", figures, notes=notes, level=3))
    return sections
