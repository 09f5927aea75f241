"""How the analysis treats each gate layout of ``fmw.sites.layouts``: one image's gate as an array of
the layout's own axes, its per-channel values (channel orderings), its mean over channels at each
position (the gate over the image), and what gate statistics accumulate per class.

A new layout adds one ``register_layout_analysis`` call here (and its picture in
``fmw.figures.layouts``); everything above reads stages as lists of ``StageSummary``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fmw.errors import FMWError
from fmw.sites.layouts import LAYOUTS
from fmw.sites.probe import StageRecord

__all__ = [
    "LAYOUT_ANALYSES",
    "LayoutAnalysis",
    "StageSummary",
    "StagedGates",
    "contract_gate",
    "first_channel_values",
    "layout_analysis",
    "layout_of_stage",
    "over_image",
    "register_layout_analysis",
    "stage_summaries",
]


@dataclass(frozen=True)
class StageSummary:
    """One stage of a site on one image: its ``name`` ("channel", "coord_h", "channel_2"), its
    ``layout``, the ``gate`` with only the layout's axes ((C,), (H, W), (C, H), (C, W), (H,), (W,)
    or (C, H, W)) and ``frame_note`` (None, or what fmw could not tie back to the map, in words)."""

    name: str
    layout: str
    gate: np.ndarray
    frame_note: str | None = None


class StagedGates:
    """Views of a record's ``stages`` (a list of ``StageSummary``) for the records that keep them."""

    stages: list[StageSummary]

    @property
    def gates(self) -> dict[str, np.ndarray]:
        """The gates by stage name, in order."""
        return {stage.name: stage.gate for stage in self.stages}

    @property
    def channel_gate(self) -> np.ndarray | None:
        """The first stage of layout "channel" (C,), or None."""
        return self._first("channel")

    @property
    def spatial_gate(self) -> np.ndarray | None:
        """The first stage of layout "spatial" (H, W), or None."""
        return self._first("spatial")

    @property
    def channel_values(self) -> np.ndarray | None:
        """One gate value per channel from the first stage with a channel axis, or None."""
        return first_channel_values(self.stages)

    @property
    def gates_over_image(self) -> np.ndarray | None:
        """The product of the stages' channel means at each position (``over_image``), or None."""
        return over_image(self.stages)

    @property
    def only_spatial_over_image(self) -> bool:
        """Whether the gates over the image are spatial gates alone (the other stages are channel gates)."""
        return {stage.layout for stage in self.stages} <= {"channel", "spatial"}

    @property
    def frame_notes(self) -> list[str]:
        """The stages' frame notes, each once, in order."""
        return list(dict.fromkeys(stage.frame_note for stage in self.stages if stage.frame_note))

    def _first(self, layout: str) -> np.ndarray | None:
        return next((stage.gate for stage in self.stages if stage.layout == layout), None)


@dataclass(frozen=True)
class LayoutAnalysis:
    """One layout's analysis: ``axes`` (from ``fmw.sites.layouts``); ``per_channel`` gives an image
    gate's one value per channel (None for a layout without the channel axis); statistics sum per
    class the gate's mean over every axis but ``accumulated_axes`` (a subset of ``axes``), and, when
    that drops an axis, also the whole gate's dataset mean and std (``keeps_mean_gate``)."""

    name: str
    axes: str
    per_channel: Callable[[np.ndarray], np.ndarray] | None
    accumulated_axes: str

    @property
    def keeps_mean_gate(self) -> bool:
        return self.accumulated_axes != self.axes

    def accumulated(self, gate: torch.Tensor) -> torch.Tensor:
        """The (N, D) values statistics sum per class, from recorded gates (N, c, h, w)."""
        dropped = [position + 1 for position, axis in enumerate("CHW") if axis not in self.accumulated_axes]
        return (gate.double().mean(dim=dropped) if dropped else gate.double()).reshape(gate.shape[0], -1)

    def accumulated_shape(self, contract_shape: Sequence[int]) -> tuple[int, ...]:
        """D's shape (one image's accumulated values), from the recorded (N, c, h, w)."""
        return tuple(size for size, axis in zip(contract_shape[1:], "CHW") if axis in self.accumulated_axes)

    def image_shape(self, contract_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of one image's gate with only the layout's axes, from the recorded (N, c, h, w)."""
        return tuple(size for size, axis in zip(contract_shape[1:], "CHW") if axis in self.axes)

    def image_gate(self, gate: torch.Tensor) -> np.ndarray:
        """One image's recorded gate (c, h, w) with only the layout's axes, as float32 numpy."""
        kept = [position for position, axis in enumerate("CHW") if axis in self.axes]
        dropped = tuple(position for position in range(3) if position not in kept)
        return gate.float().cpu().numpy().squeeze(axis=dropped).copy()

    def over_image(self, gate: np.ndarray) -> np.ndarray | None:
        """The gate's mean over channels at each position, (H, 1), (1, W) or (H, W) to broadcast
        over the image; None for a layout without a position axis."""
        if "H" not in self.axes and "W" not in self.axes:
            return None
        full = contract_gate(gate, self.name)[0].numpy()
        return full.mean(axis=0, dtype=np.float64).astype(np.float32)


LAYOUT_ANALYSES: dict[str, LayoutAnalysis] = {}


def register_layout_analysis(
    name: str, per_channel: Callable[[np.ndarray], np.ndarray] | None, accumulated_axes: str | None = None
) -> LayoutAnalysis:
    """Add how to analyse layout ``name`` (registered in ``fmw.sites.layouts``). By default
    statistics accumulate every gate value (``accumulated_axes`` = the layout's axes)."""
    if name not in LAYOUTS:
        raise ValueError(f"no gate layout {name!r} in fmw.sites.layouts; register it there first")
    axes = LAYOUTS[name].axes
    if accumulated_axes is not None and not set(accumulated_axes) <= set(axes):
        raise ValueError(f"layout {name!r} varies over {axes}; it cannot accumulate over {accumulated_axes}")
    entry = LayoutAnalysis(name, axes, per_channel, axes if accumulated_axes is None else accumulated_axes)
    LAYOUT_ANALYSES[name] = entry
    return entry


def layout_analysis(layout: str) -> LayoutAnalysis:
    """The analysis of ``layout``; an ``FMWError`` naming the registered layouts otherwise."""
    try:
        return LAYOUT_ANALYSES[layout]
    except KeyError:
        raise FMWError(
            f"no analysis for gate layout {layout!r}; known: {', '.join(LAYOUT_ANALYSES)}. "
            "Register it with fmw.analysis.layouts.register_layout_analysis"
        ) from None


def layout_of_stage(stage: str) -> str:
    """The layout a stage name stands for ("channel_2" -> "channel"): statistics files written
    before stages recorded their layout name each stage after it."""
    return re.sub(r"_\d+$", "", stage)


def contract_gate(gate: np.ndarray, layout: str) -> torch.Tensor:
    """An image gate with only ``layout``'s axes back in its contract shape (1, c, h, w)."""
    axes = layout_analysis(layout).axes
    values = torch.from_numpy(np.ascontiguousarray(gate, dtype=np.float32))
    for position, axis in enumerate("CHW"):
        if axis not in axes:
            values = values.unsqueeze(position)
    return values.unsqueeze(0)


def stage_summaries(stages: Iterable[StageRecord], index: int = 0) -> list[StageSummary]:
    """Image ``index`` of each recorded stage (a gate with one row, a parameter's, serves every image)."""
    return [
        StageSummary(
            stage.name,
            stage.layout,
            layout_analysis(stage.layout).image_gate(stage.gate[index if stage.gate.shape[0] > 1 else 0]),
            stage.frame_note,
        )
        for stage in stages
    ]


def first_channel_values(stages: Sequence[StageSummary]) -> np.ndarray | None:
    """One value per channel from the first stage that has them (a channel gate, a coordinate
    gate's mean over its positions, ...), or None."""
    for stage in stages:
        per_channel = layout_analysis(stage.layout).per_channel
        if per_channel is not None:
            return per_channel(stage.gate)
    return None


def over_image(stages: Sequence[StageSummary]) -> np.ndarray | None:
    """The site's gates over the image: the product of its stages' channel means at each position
    (coordinate attention: the outer product of mean_C a_h and mean_C a_w), (H, W); None when no
    stage has a position axis."""
    factors = [
        factor for stage in stages if (factor := layout_analysis(stage.layout).over_image(stage.gate)) is not None
    ]
    if not factors:
        return None
    product = factors[0]
    for factor in factors[1:]:
        product = product * factor
    return np.broadcast_to(product, np.broadcast_shapes(*(f.shape for f in factors))).astype(np.float32)


def _mean_over_last(gate: np.ndarray) -> np.ndarray:
    return gate.reshape(gate.shape[0], -1).mean(axis=1, dtype=np.float64).astype(np.float32)


register_layout_analysis("channel", per_channel=lambda gate: gate)
register_layout_analysis("spatial", per_channel=None)
register_layout_analysis("coord_h", per_channel=_mean_over_last)
register_layout_analysis("coord_w", per_channel=_mean_over_last)
register_layout_analysis("strip_h", per_channel=None)
register_layout_analysis("strip_w", per_channel=None)
register_layout_analysis("full", per_channel=_mean_over_last, accumulated_axes="C")
