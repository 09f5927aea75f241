"""What a model's weighting sites are, as a table: per site its name, kind, stages (with the gate
of each: channel or spatial, static or input-dependent), channel count and feature-map size, found
by one probe at a given input size. ``fmw inspect`` prints it; notebooks show it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fmw.device import model_device
from fmw.sites import NOTHING_FOUND, find_sites, probe

__all__ = ["SiteRow", "format_site_table", "site_rows"]


@dataclass(frozen=True)
class SiteRow:
    name: str
    kind: str
    stages: tuple[str, ...]  # e.g. "channel", "spatial", "channel (static)"
    channels: int
    height: int
    width: int


def site_rows(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3, seed: int = 0) -> list[SiteRow]:
    """The sites ``model`` shows on one seeded random image of ``input_size`` (H, W)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(1, in_channels, *input_size, generator=generator).to(model_device(model))
    result = probe(model, images)
    specs = {spec.name: spec for spec in find_sites(model)}
    rows = []
    for record in result.sites:
        spec = specs[record.name]
        stages = tuple(f"{stage.name} (static)" if stage.static else stage.name for stage in spec.stages)
        _, channels, height, width = record.before.shape
        rows.append(SiteRow(record.name or "(the model itself)", record.kind, stages, channels, height, width))
    return rows


def format_site_table(rows: list[SiteRow]) -> str:
    """The rows as an aligned text table, or what fmw looks for when there are none."""
    if not rows:
        return NOTHING_FOUND
    header = ("site", "kind", "stages", "channels", "map")
    cells = [
        (r.name, r.kind, " -> ".join(r.stages) or "(no gate)", str(r.channels), f"{r.height}x{r.width}") for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    ]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])
