"""Statistics of one model's sites over the analyses of several images: ``batch_statistics`` (every
gate value, each stage's mean gate, per-channel gate mean and spread, the mean energy ratio: the
dashboard's Batch statistics) and ``batch_gate_statistics`` (gate statistics grouped by predicted
class: its Gate statistics over the sidebar's images and Weighting off's mean gates).

Both read the gates the analyses already hold (no second forward pass) and average them with the
one accumulator dataset statistics use (``fmw.analysis.stats.GateAccumulator``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fmw.analysis.images import ImageAnalysis
from fmw.analysis.layouts import StageSummary, contract_gate
from fmw.analysis.stats import GateAccumulator, GateStatistics
from fmw.sites import ProbeResult, SiteRecord
from fmw.sites.probe import StageRecord

__all__ = ["SiteStatistics", "batch_gate_statistics", "batch_statistics"]


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


def _probed_batch(analyses: Sequence[ImageAnalysis]) -> ProbeResult:
    """The analyses' gates as one probe of them all with ``maps=False`` records them: each stage's
    gates stacked in its layout's contract shape (N, c, h, w), the maps as meta tensors of their shape."""
    records = []
    for position, first in enumerate(analyses[0].sites):
        sites = [analysis.sites[position] for analysis in analyses]
        stages = []
        for order, stage in enumerate(first.stages):
            gates = [site.stages[order].gate for site in sites]
            shapes = sorted({gate.shape for gate in gates})
            if len(shapes) > 1:
                raise ValueError(
                    f"the {stage.name} gate of {first.name} has a different size on different images ({shapes[0]} "
                    f"and {shapes[-1]}), as a detector's does on images of different shapes, so it has no mean; "
                    "use images of one shape"
                )
            stacked = torch.cat([contract_gate(gate, stage.layout) for gate in gates])
            stages.append(StageRecord(stage.name, stage.layout, stacked, stage.frame_note))
        maps = torch.empty((len(sites), *first.after.shape), device="meta")
        records.append(SiteRecord(first.name, first.kind, maps, maps, stages))
    return ProbeResult(output=None, sites=records)


def _accumulated(analyses: Sequence[ImageAnalysis], groups: Sequence[int], classes: int) -> GateAccumulator:
    """The analyses' gates summed per group (``groups``: one class index per analysis)."""
    accumulator = GateAccumulator(classes)
    accumulator.add(_probed_batch(analyses), torch.tensor(list(groups), dtype=torch.long))
    return accumulator


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
        >>> import fmw
        >>> from fmw.analysis import analyse_images
        >>> rgbs = [np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8) for seed in range(3)]
        >>> first = batch_statistics(analyse_images(fmw.load_model("cbam"), rgbs))[0]
        >>> first.name, first.images, {stage: values.shape for stage, values in first.gate_values.items()}
        ('stages.0.weighting', 3, {'channel': (192,), 'spatial': (675,)})
        >>> first.channel_gate_mean.shape, [stage.gate.shape for stage in first.mean_stages]
        ((64,), [(64,), (15, 15)])
    """
    if not analyses:
        return []
    accumulator = _accumulated(analyses, [0] * len(analyses), 1)
    statistics = []
    for position, first in enumerate(analyses[0].sites):
        sites = [analysis.sites[position] for analysis in analyses]
        gate_values = {stage: np.concatenate([s.gates[stage].ravel() for s in sites]) for stage in first.gates}
        mean_stages = [
            replace(stage, gate=accumulator.stage(first.name, stage.name, stage.layout).layout_mean.astype(np.float32))
            for stage in first.stages
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


def batch_gate_statistics(
    analyses: Sequence[ImageAnalysis], class_names: Sequence[str], *, source: str = "batch"
) -> GateStatistics:
    """Gate statistics (``fmw.analysis.stats``: class means, class specificity, dataset-mean gates)
    of a classifier's analyses of several images, grouped by the class it predicts for each
    (uploads carry no labels): the numbers ``gate_statistics`` gives for a probe of the same images.

    Args:
        analyses: ``analyse_images`` of one classifier on several images of one shape.
        class_names: the classifier's class names (``ModelHandle.class_names``).
        source: the name the statistics carry.

    Returns:
        The statistics, grouped by predicted class (``grouping == "prediction"``).

    Raises:
        ValueError: no analyses, an analysis without a predicted class (not a classifier's), or a
            gate with different sizes on different images.

    Examples:
        >>> import fmw
        >>> from fmw.analysis import analyse_images
        >>> handle = fmw.load_model("eca")
        >>> rgbs = [np.full((32, 32, 3), value, np.uint8) for value in (0, 100, 200)]
        >>> statistics = batch_gate_statistics(analyse_images(handle, rgbs), handle.class_names)
        >>> statistics.images, statistics.grouping, statistics.sites[0].stages["channel"].class_mean.shape
        (3, 'prediction', (10, 64))
        >>> tuple(statistics.replacements()["stages.0.weighting"]["channel"].shape)  # for override_gates
        (1, 64, 1, 1)
    """
    if not analyses:
        raise ValueError("no analyses: gate statistics need at least one image")
    if not all(analysis.predictions for analysis in analyses):
        raise ValueError(
            "grouping by predicted class needs a classifier's predictions; group another model's gates by "
            "folder with fmw stats MODEL --data FOLDER"
        )
    groups = [analysis.predictions[0].index for analysis in analyses]
    return _accumulated(analyses, groups, len(class_names)).statistics(class_names, "prediction", source)
