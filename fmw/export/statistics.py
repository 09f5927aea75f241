"""The HTML page of a gate-statistics object: class specificity by depth, then one class x channel
(or class x position) heatmap per site and stage."""

from __future__ import annotations

import plotly.graph_objects as go

from fmw.analysis.stats import GateStatistics
from fmw.export.files import Section
from fmw.figures import class_gate_heatmap_figure, specificity_figure


def statistics_sections(statistics: GateStatistics, label: str = "") -> list[Section]:
    """The figures of one statistics object as page sections: specificity by depth, then one class
    x channel (or class x position) heatmap per site and stage."""
    depths, values, names = statistics.specificity_by_depth()
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
    for site in statistics.sites:
        figures: list[go.Figure] = [
            class_gate_heatmap_figure(stage.class_mean, statistics.class_names, stage=stage.stage, shape=stage.shape)
            for stage in site.stages.values()
        ]
        specificity = "n/a" if site.specificity is None else f"{site.specificity:.3f}"
        height, width = site.resolution
        notes = [f"{site.kind}, {site.channels} channels at {height}x{width}; specificity {specificity}"]
        if not site.stages:
            notes.append("No gate at this site: nothing to average.")
        sections.append(Section(f"Site {site.name}", figures, notes=notes, level=3))
    return sections
