"""The registry of gate layouts: which axes of a feature map x (N, C, H, W) a gate varies over,
and the shape a record gives such a gate (its contract shape). A new layout is a new entry here.

Upper layers (summaries, figures, statistics, exports) key their own per-layout behaviour by the
layout's name; this module knows nothing of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AXES", "LAYOUTS", "GateLayout", "layout_for_axes", "register_layout"]

AXES = "CHW"  # the axes of a map a gate may vary over, in the map's order after the batch axis


@dataclass(frozen=True)
class GateLayout:
    """One layout: its ``name`` (the registry key, also the stage name), the ``axes`` of the map
    it varies over (a subset of "CHW", in that order) and a one-line ``description``."""

    name: str
    axes: str
    description: str

    def contract_shape(self, map_shape: Iterable[int]) -> tuple[int, int, int, int]:
        """The recorded gate's shape for a map of ``map_shape`` (N, C, H, W): the batch and the
        layout's axes kept, the other axes 1."""
        n, c, h, w = map_shape
        return (n, c if "C" in self.axes else 1, h if "H" in self.axes else 1, w if "W" in self.axes else 1)


LAYOUTS: dict[str, GateLayout] = {}
_BY_AXES: dict[str, GateLayout] = {}


def _canonical(axes: Iterable[str]) -> str:
    chosen = set(axes)
    unknown = chosen - set(AXES)
    if unknown or not chosen:
        raise ValueError(f"a layout's axes are a non-empty subset of {AXES!r}, got {''.join(sorted(chosen))!r}")
    return "".join(axis for axis in AXES if axis in chosen)


def register_layout(name: str, axes: Iterable[str], description: str) -> GateLayout:
    """Add a layout to the registry (its name and its axes must both be new) and return it."""
    layout = GateLayout(name, _canonical(axes), description)
    if name in LAYOUTS:
        raise ValueError(f"a layout named {name!r} is already registered ({LAYOUTS[name].axes})")
    if layout.axes in _BY_AXES:
        raise ValueError(f"layout {_BY_AXES[layout.axes].name!r} already varies over {layout.axes}")
    LAYOUTS[name] = layout
    _BY_AXES[layout.axes] = layout
    return layout


def layout_for_axes(axes: Iterable[str]) -> GateLayout | None:
    """The registered layout varying over exactly ``axes`` (e.g. "CH"), or None."""
    chosen = set(axes)
    return _BY_AXES.get("".join(axis for axis in AXES if axis in chosen))


register_layout("channel", "C", "one value per channel (squeeze-and-excitation, ECA, layer scale)")
register_layout("spatial", "HW", "one value per position, shared by all channels (CBAM's spatial gate)")
register_layout("coord_h", "CH", "one value per channel and row (coordinate attention's height gate)")
register_layout("coord_w", "CW", "one value per channel and column (coordinate attention's width gate)")
register_layout("strip_h", "H", "one value per row, shared by all channels and columns (strip attention)")
register_layout("strip_w", "W", "one value per column, shared by all channels and rows (strip attention)")
register_layout("full", "CHW", "one value per channel and position (SimAM, BAM, GAM)")
