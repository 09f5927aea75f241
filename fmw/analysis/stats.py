"""Gate statistics over a dataset split or an in-memory batch: per site and class the mean gate, one
class-specificity number per site, the dataset-mean gate.

Each stage is accumulated as its layout asks (``fmw.analysis.layouts``), whatever its name: channel
gates give a class x channel matrix, spatial gates a class x position matrix (the mean map per
class, flattened; every image reaches the model at one size: a split's own, or, for image folders
read by ``fmw.analysis.streaming``, the model's input size after its resize and centre crop),
coordinate and strip gates a class x (channel, position) or class x position matrix, full-size gates
a class x channel matrix of their mean over positions plus the dataset-mean gate (C, H, W) itself.
A site's single specificity number is that of its first stage with a channel axis, else of its
first stage. ``GateAccumulator`` holds per class only sums and sums of squares, so statistics
over any number of images take the same memory, and processes' accumulators add up exactly.

Class specificity of one stage, from per-image gates g (D values each: channels or positions),
class means m_k over n_k images, the pooled within-class variance w_d and total variance v_d:

    distance(i, j) = sqrt(max(0, mean_d (m_i,d - m_j,d)^2 - mean_d(w_d) * (1/n_i + 1/n_j)))
    class_distance = mean of distance(i, j) over pairs of classes that have images
    specificity    = class_distance / sqrt(2 * mean_d v_d)          (0 when the gate never varies)

The subtracted term removes the distance that sampling noise alone puts between class means, so a
class-agnostic gate scores about 0 whatever the number of images. The denominator is the RMS
distance between the gates of two random images, so the number has no unit and does not depend on
the channel count: about 0 = the same profile for every class, about 1 = the gate is set by the
class alone (sqrt(K / (K - 1)) for K balanced classes at most).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from fmw.analysis.distributed import all_gather_objects, all_reduce_sum
from fmw.analysis.layouts import contract_gate, layout_analysis, layout_of_stage
from fmw.device import model_device
from fmw.io import ImageSplit, normalize
from fmw.io.datasets import batches
from fmw.sites import ProbeResult, SiteDepth, probe, site_depths

FORMAT_NAME = "fmw-gate-statistics"
AXIS_WORDS = {"C": "channel", "H": "row", "W": "column"}


SPECIFICITY_DEFINITION = (
    "mean over class pairs (i, j) of sqrt(max(0, mean_d (m_i,d - m_j,d)^2 - mean_d(w_d) * (1/n_i + 1/n_j))) "
    "/ sqrt(2 * mean_d v_d); m: class-mean gate, n: images per class, w: pooled within-class variance, "
    "v: variance over all images, d: channel or position (see fmw/analysis/stats.py)"
)


Grouping = Literal["label", "prediction"]


def _listed(array: np.ndarray) -> list:
    """A nested list for JSON, NaN as null."""
    return np.where(np.isnan(array), np.array(None, dtype=object), array).tolist()


def _array(values: list) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _optional(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass
class StageStatistics:
    """One gate stage of one site: ``class_mean`` (K, D) with NaN rows for classes without images,
    the dataset ``mean`` and ``std`` (D,), where D is what the stage's ``layout`` accumulates, of
    ``shape`` (channels; h, w positions; c, h or c, w; for a full-size gate its channels, each the
    mean over positions). ``gate_mean`` and ``gate_std`` (C, H, W): the whole gate's dataset mean
    and std, for layouts whose D does not hold it (full); None otherwise. ``layout`` defaults to
    the stage's name without its number (files written before stages recorded their layout)."""

    stage: str
    shape: tuple[int, ...]
    class_mean: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    specificity: float | None
    class_distance: float | None
    layout: str = ""
    gate_mean: np.ndarray | None = None
    gate_std: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.layout = self.layout or layout_of_stage(self.stage)

    @property
    def label(self) -> str:
        """The stage in words: "channel gate", "full gate (per channel, mean over positions)"."""
        analysis = layout_analysis(self.layout)
        if not analysis.keeps_mean_gate:
            return f"{self.stage} gate"
        kept = ", ".join(AXIS_WORDS[axis] for axis in analysis.accumulated_axes)
        return f"{self.stage} gate (per {kept}, mean over the other axes)"

    @property
    def axes(self) -> str:
        """The axes of the map D runs over, in order ("C", "HW", "CH", ...)."""
        return layout_analysis(self.layout).accumulated_axes

    @property
    def layout_mean(self) -> np.ndarray:
        """The dataset-mean gate with the layout's axes: (C,), (h, w), (C, h), ..., (C, H, W)."""
        return self.mean.reshape(self.shape) if self.gate_mean is None else self.gate_mean

    def mean_gate(self) -> torch.Tensor:
        """The dataset-mean gate in the layout's contract shape: (1, C, 1, 1), (1, 1, h, w), ..."""
        return contract_gate(self.layout_mean, self.layout)

    def to_json(self) -> dict:
        data = {
            "layout": self.layout,
            "shape": list(self.shape),
            "class_mean": _listed(self.class_mean),
            "mean": _listed(self.mean),
            "std": _listed(self.std),
            "specificity": _optional(self.specificity),
            "class_distance": _optional(self.class_distance),
        }
        if self.gate_mean is not None and self.gate_std is not None:
            data.update(gate_mean=_listed(self.gate_mean), gate_std=_listed(self.gate_std))
        return data

    @classmethod
    def from_json(cls, stage: str, data: dict) -> StageStatistics:
        return cls(
            stage=stage,
            shape=tuple(data["shape"]),
            class_mean=_array(data["class_mean"]),
            mean=_array(data["mean"]),
            std=_array(data["std"]),
            specificity=data["specificity"],
            class_distance=data["class_distance"],
            layout=data.get("layout", ""),
            gate_mean=_array(data["gate_mean"]) if "gate_mean" in data else None,
            gate_std=_array(data["gate_std"]) if "gate_std" in data else None,
        )


@dataclass
class SiteGateStatistics:
    """One site: where it is (forward ``index``, ``relative_depth`` 0..1, output ``resolution``)
    and its gate stages by name, in order (none for a site without gates)."""

    name: str
    kind: str
    index: int
    relative_depth: float
    channels: int
    resolution: tuple[int, int]
    stages: dict[str, StageStatistics] = field(default_factory=dict)

    @property
    def specificity(self) -> float | None:
        """The specificity of the first stage with a channel axis, else of the first stage, else None."""
        with_channels = [s for s in self.stages.values() if layout_analysis(s.layout).per_channel is not None]
        first = next(iter(with_channels or self.stages.values()), None)
        return None if first is None else first.specificity

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "index": self.index,
            "relative_depth": self.relative_depth,
            "channels": self.channels,
            "resolution": list(self.resolution),
            "specificity": _optional(self.specificity),
            "stages": {stage: statistics.to_json() for stage, statistics in self.stages.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> SiteGateStatistics:
        return cls(
            name=data["name"],
            kind=data["kind"],
            index=data["index"],
            relative_depth=data["relative_depth"],
            channels=data["channels"],
            resolution=tuple(data["resolution"]),
            stages={stage: StageStatistics.from_json(stage, part) for stage, part in data["stages"].items()},
        )


@dataclass
class GateStatistics:
    """Every site of one model over ``images`` images grouped by true label or by prediction."""

    source: str
    grouping: str
    class_names: list[str]
    class_counts: np.ndarray
    sites: list[SiteGateStatistics]

    @property
    def images(self) -> int:
        return int(self.class_counts.sum())

    def site(self, name: str) -> SiteGateStatistics:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(f"no statistics for site {name!r}; sites: {', '.join(s.name for s in self.sites)}")

    def replacements(self) -> dict[str, dict[str, torch.Tensor]]:
        """Dataset-mean gates per site and stage, ready for ``override_gates`` or ``mean_gates=``."""
        return {
            site.name: {stage: statistics.mean_gate() for stage, statistics in site.stages.items()}
            for site in self.sites
            if site.stages
        }

    def specificity_by_depth(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Relative depths, specificities (NaN where undefined) and names of the sites with gates."""
        gated = [site for site in self.sites if site.stages]
        depths = np.array([site.relative_depth for site in gated], dtype=np.float64)
        values = np.array([np.nan if site.specificity is None else site.specificity for site in gated])
        return depths, values, [site.name for site in gated]

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "source": self.source,
            "grouping": self.grouping,
            "images": self.images,
            "class_names": self.class_names,
            "class_counts": self.class_counts.tolist(),
            "specificity_definition": SPECIFICITY_DEFINITION,
            "sites": [site.to_json() for site in self.sites],
        }

    @classmethod
    def from_json(cls, data: dict) -> GateStatistics:
        """Read what ``to_json`` wrote (e.g. a ``python -m fmw stats`` file)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError(
                f"not an fmw gate-statistics file (expected format {FORMAT_NAME!r}); make one with python -m fmw stats"
            )
        return cls(
            source=data["source"],
            grouping=data["grouping"],
            class_names=list(data["class_names"]),
            class_counts=np.array(data["class_counts"], dtype=np.int64),
            sites=[SiteGateStatistics.from_json(site) for site in data["sites"]],
        )


def class_specificity(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> tuple[float | None, float | None]:
    """(specificity, class_distance) of one stage from per-class sums and sums of squares (K, D)
    of the gates and the class counts (K,), as the module docstring defines them; (None, None)
    when fewer than two classes have images."""
    present = counts > 0
    if present.sum() < 2:
        return None, None
    sums, squares, counts = sums[present], squares[present], counts[present].astype(np.float64)
    total = counts.sum()
    means = sums / counts[:, None]
    variance = np.maximum(squares.sum(0) / total - (sums.sum(0) / total) ** 2, 0.0).mean()
    within_squares = squares.sum(0) - (sums**2 / counts[:, None]).sum(0)
    within = np.maximum(within_squares, 0.0).mean() / max(total - len(counts), 1.0)
    norms = np.square(means).sum(1)
    squared = (norms[:, None] + norms[None, :] - 2.0 * means @ means.T) / means.shape[1]
    noise = within * (1.0 / counts[:, None] + 1.0 / counts[None, :])
    upper = np.triu_indices(len(counts), k=1)
    distance = float(np.sqrt(np.maximum(squared - noise, 0.0))[upper].mean())
    specificity = distance / float(np.sqrt(2.0 * variance)) if variance > 1e-12 else 0.0
    return specificity, distance


@dataclass(frozen=True)
class _SiteLayout:
    """What a site's statistics record besides the gates: its place in the model and its stages."""

    kind: str
    depth: SiteDepth
    stages: tuple[tuple[str, str], ...]  # (name, layout) in order


class GateAccumulator:
    """Per-class sums and sums of squares of every site's gates (float64, on the gates' device), and
    where each site sits: all that the statistics need, so memory does not grow with the images.
    ``add`` one probed batch at a time; ``all_reduce`` sums the accumulators of every process."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.counts = torch.zeros(classes, dtype=torch.float64)  # moves to the gates' device with the first batch
        self.sums: dict[tuple[str, str], torch.Tensor] = {}
        self.squares: dict[tuple[str, str], torch.Tensor] = {}
        self.shapes: dict[tuple[str, str], tuple[int, ...]] = {}
        self.gate_shapes: dict[tuple[str, str], tuple[int, ...]] = {}  # stages that keep the whole mean gate
        self.gate_sums: dict[tuple[str, str], torch.Tensor] = {}
        self.gate_squares: dict[tuple[str, str], torch.Tensor] = {}
        self.sites: dict[str, _SiteLayout] = {}  # in forward order, from the first batch

    def add(self, result: ProbeResult, groups: torch.Tensor) -> None:
        """Add one probed batch whose images belong to classes ``groups`` (B,), on the logits' device."""
        if not self.sites:
            self.sites = {
                record.name: _SiteLayout(record.kind, depth, tuple((s.name, s.layout) for s in record.stages))
                for record, depth in zip(result.sites, site_depths(result))
            }
        self.counts = self.counts.to(groups.device) + torch.bincount(groups, minlength=self.classes).double()
        for record in result.sites:
            for stage in record.stages:
                key, analysis = (record.name, stage.name), layout_analysis(stage.layout)
                gate = stage.gate.expand(len(groups), *stage.gate.shape[1:])  # a parameter's gate serves every image
                image_shape, shape = analysis.image_shape(gate.shape), analysis.accumulated_shape(gate.shape)
                if self.shapes.setdefault(key, shape) != shape:
                    raise ValueError(
                        f"site {record.name!r}: {stage.name} gate {shape} differs from {self.shapes[key]} in earlier "
                        "batches; every image must have the same size"
                    )
                _add_by_class(self.sums, self.squares, key, groups, analysis.accumulated(gate).double(), self.classes)
                if analysis.keeps_mean_gate:
                    self.gate_shapes[key] = image_shape
                    _add_by_class(self.gate_sums, self.gate_squares, key, None, gate.reshape(len(groups), -1), 1)

    def all_reduce(self) -> None:
        """Sum the accumulators of every process (``torch.distributed``; nothing to do without a
        process group), so each holds the statistics of the whole dataset. A process that saw no
        image takes its sites from the others."""
        gathered = all_gather_objects((self.sites, self.shapes, self.gate_shapes))
        layouts = [layout for layout in gathered if layout[0]]
        if not layouts:
            return
        sites, shapes, gate_shapes = layouts[0]
        if any(layout != (sites, shapes, gate_shapes) for layout in layouts):
            raise ValueError("the processes found different weighting sites or gate shapes; run them on one model")
        self.sites, self.shapes, self.gate_shapes = sites, shapes, gate_shapes
        for sums, squares, sizes, rows in (
            (self.sums, self.squares, shapes, self.classes),
            (self.gate_sums, self.gate_squares, gate_shapes, 1),
        ):
            for key, shape in sizes.items():
                if key not in sums:
                    sums[key] = torch.zeros(rows, math.prod(shape), dtype=torch.float64)
                    squares[key] = torch.zeros_like(sums[key])
        keys, gate_keys = sorted(shapes), sorted(gate_shapes)
        parts = [self.sums, self.squares, self.gate_sums, self.gate_squares]
        summed = iter(
            all_reduce_sum(
                [self.counts, *(part[key] for part in parts[:2] for key in keys)]
                + [part[key] for part in parts[2:] for key in gate_keys]
            )
        )
        self.counts = next(summed)
        self.sums, self.squares = ({key: next(summed) for key in keys} for _ in range(2))
        self.gate_sums, self.gate_squares = ({key: next(summed) for key in gate_keys} for _ in range(2))

    def stage(self, name: str, stage: str, layout: str) -> StageStatistics:
        key = (name, stage)
        sums, squares = self.sums[key].cpu().numpy(), self.squares[key].cpu().numpy()
        counts = self.counts.cpu().numpy()
        total = counts.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            class_mean = sums / counts[:, None]
        mean, std = _mean_and_std(sums, squares, total)
        specificity, distance = class_specificity(sums, squares, counts)
        gate_mean = gate_std = None
        if key in self.gate_shapes:
            gate_mean, gate_std = _mean_and_std(
                self.gate_sums[key].cpu().numpy(), self.gate_squares[key].cpu().numpy(), total
            )
            gate_mean, gate_std = gate_mean.reshape(self.gate_shapes[key]), gate_std.reshape(self.gate_shapes[key])
        return StageStatistics(
            stage, self.shapes[key], class_mean, mean, std, specificity, distance, layout, gate_mean, gate_std
        )

    def statistics(self, class_names: Sequence[str], grouping: str, source: str) -> GateStatistics:
        """The statistics of everything added (and reduced) so far."""
        if not self.sites or not float(self.counts.sum()):
            raise ValueError("no images: statistics need at least one batch with one image")
        sites = [
            SiteGateStatistics(
                name=name,
                kind=layout.kind,
                index=layout.depth.index,
                relative_depth=layout.depth.relative_depth,
                channels=layout.depth.channels,
                resolution=layout.depth.resolution,
                stages={stage: self.stage(name, stage, kind) for stage, kind in layout.stages},
            )
            for name, layout in self.sites.items()
        ]
        counts = self.counts.cpu().numpy().astype(np.int64)
        return GateStatistics(source, grouping, list(class_names), counts, sites)


def _mean_and_std(sums: np.ndarray, squares: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over ``total`` images from sums and sums of squares summed over their rows."""
    mean = sums.sum(0) / total
    return mean, np.sqrt(np.maximum(squares.sum(0) / total - mean**2, 0.0))


def _add_by_class(
    sums: dict[tuple[str, str], torch.Tensor],
    squares: dict[tuple[str, str], torch.Tensor],
    key: tuple[str, str],
    groups: torch.Tensor | None,
    values: torch.Tensor,
    rows: int,
) -> None:
    """Add ``values`` (B, D) to row ``groups`` (B,) of ``sums[key]`` and their squares to ``squares[key]``
    (float64, ``rows`` x D, made on the first call); ``groups`` None adds every image to row 0."""
    values = values.double()
    if key not in sums:
        sums[key] = torch.zeros(rows, values.shape[1], dtype=torch.float64, device=values.device)
        squares[key] = torch.zeros_like(sums[key])
    if groups is None:
        sums[key][0] += values.sum(0)
        squares[key][0] += values.square().sum(0)
    else:
        sums[key].index_add_(0, groups, values)
        squares[key].index_add_(0, groups, values.square())


def collect_gate_statistics(
    model: nn.Module,
    batches_of_inputs: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    class_names: Sequence[str],
    *,
    group_by: Grouping = "label",
    source: str = "",
) -> GateStatistics:
    """Statistics over batches of (normalised inputs (B, C, H, W), labels (B,) or None): one probe
    per batch, accumulated with ``index_add_`` on the model's device. ``group_by="prediction"``
    groups images by the predicted class (labels may then be None, e.g. for uploaded images)."""
    if group_by not in ("label", "prediction"):
        raise ValueError(f"group_by must be 'label' or 'prediction', got {group_by!r}")
    accumulator = GateAccumulator(len(class_names))
    for inputs, labels in batches_of_inputs:
        result = probe(model, inputs, keep_on_device=True, maps=False)
        if group_by == "label":
            if labels is None:
                raise ValueError(
                    "grouping by label needs labels for every batch; use group_by='prediction' without them"
                )
            groups = labels.to(result.logits.device, torch.long)
        else:
            groups = result.logits.argmax(dim=1)
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= len(class_names)):
            raise ValueError(f"labels must lie in 0..{len(class_names) - 1} for {len(class_names)} classes")
        accumulator.add(result, groups)
    return accumulator.statistics(class_names, group_by, source)


def gate_statistics(
    model: nn.Module,
    inputs: torch.Tensor,
    class_names: Sequence[str],
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = 64,
    source: str = "batch",
) -> GateStatistics:
    """Statistics over an in-memory batch of normalised inputs (the dashboard's uploads), grouped
    by ``labels`` when given, else by predicted class."""
    chunks = [
        (inputs[start : start + batch_size], None if labels is None else labels[start : start + batch_size])
        for start in range(0, inputs.shape[0], batch_size)
    ]
    group_by: Grouping = "prediction" if labels is None else "label"
    return collect_gate_statistics(model, chunks, class_names, group_by=group_by, source=source)


def split_gate_statistics(
    model: nn.Module,
    split: ImageSplit,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 256,
    progress: Callable[[float], None] | None = None,
) -> GateStatistics:
    """Statistics over a dataset split (uint8 images normalised batch by batch on the model's
    device), grouped by true label; ``progress`` gets the fraction of images done."""
    device = model_device(model)

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        done = 0
        for indices in batches(len(split), batch_size, None):
            yield normalize(split.images[indices].to(device), tuple(mean), tuple(std)), split.labels[indices]
            done += len(indices)
            if progress is not None:
                progress(done / len(split))

    return collect_gate_statistics(model, chunks(), split.class_names, group_by="label", source=split.source)
