"""Statistics of one model's sites over the analyses of several images (the dashboard's Batch
statistics): every gate value, each stage's mean gate, per-channel gate mean and spread, and the
mean energy ratio."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fmw.analysis.images import ImageAnalysis
from fmw.analysis.layouts import StageSummary

__all__ = ["SiteStatistics", "batch_statistics"]


@dataclass
class SiteStatistics:
    """One site over a batch of images: every gate value per stage, each stage's mean gate (in
    its layout), per-channel mean and std of the first stage with a channel axis, and the
    per-channel mean energy ratio after/before."""

    name: str
    kind: str
    images: int
    gate_values: dict[str, np.ndarray] = field(default_factory=dict)
    mean_stages: list[StageSummary] = field(default_factory=list)
    channel_gate_mean: np.ndarray | None = None
    channel_gate_std: np.ndarray | None = None
    energy_ratio_mean: np.ndarray | None = None


def batch_statistics(analyses: list[ImageAnalysis]) -> list[SiteStatistics]:
    """Per site, over the analyses of several images by one model (same sites, same order).

    Args:
        analyses: ``analyse_images`` of one model on several images of one shape.

    Returns:
        One ``SiteStatistics`` per site, in forward order; empty for no analyses.

    Raises:
        ValueError: a gate has different sizes on different images (a detector's on images of
            different shapes), so it has no mean.

    Examples:
        >>> statistics = batch_statistics(analyse_images(handle, rgbs))
        >>> statistics[0].channel_gate_mean
    """
    if not analyses:
        return []
    statistics = []
    for position, first in enumerate(analyses[0].sites):
        sites = [analysis.sites[position] for analysis in analyses]
        gate_values = {stage: np.concatenate([s.gates[stage].ravel() for s in sites]) for stage in first.gates}
        for order, stage in enumerate(first.stages):
            shapes = sorted({s.stages[order].gate.shape for s in sites})
            if len(shapes) > 1:
                raise ValueError(
                    f"the {stage.name} gate of {first.name} has a different size on different images ({shapes[0]} "
                    f"and {shapes[-1]}), as a detector's does on images of different shapes, so it has no mean; "
                    "use images of one shape"
                )
        mean_stages = [
            replace(stage, gate=np.stack([s.stages[order].gate for s in sites]).mean(axis=0).astype(np.float32))
            for order, stage in enumerate(first.stages)
        ]
        present = [s.channel_values for s in sites if s.channel_values is not None]  # all or none (same sites)
        channel_gates = np.stack(present) if present else None
        statistics.append(
            SiteStatistics(
                name=first.name,
                kind=first.kind,
                images=len(sites),
                gate_values=gate_values,
                mean_stages=mean_stages,
                channel_gate_mean=None if channel_gates is None else channel_gates.mean(axis=0),
                channel_gate_std=None if channel_gates is None else channel_gates.std(axis=0),
                energy_ratio_mean=np.stack([s.energy_ratio for s in sites]).mean(axis=0),
            )
        )
    return statistics
