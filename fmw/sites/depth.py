"""Where each weighting site sits in its network (forward position, resolution stage), so that sites
of models with different depths and input sizes can be matched for side-by-side comparison.

Matching by depth has one rule: a site's relative depth is its forward index scaled to 0..1, and a
position is matched to the site of the other model nearest to it in relative depth, the earlier
site on a tie. ``match_sites`` applies it to the sites of two probed models, ``site_index_at_depth``
to a position of a depth slider (the dashboard's Compare)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fmw.sites.probe import ProbeResult

__all__ = ["SiteDepth", "match_sites", "site_depths", "site_index_at_depth"]


@dataclass(frozen=True)
class SiteDepth:
    """One site's place in its model: ``index`` in forward order, ``relative_depth`` = index scaled
    to 0..1, ``stage`` = rank of its output resolution (0 = largest) among the model's sites."""

    name: str
    index: int
    relative_depth: float
    stage: int
    stage_count: int
    resolution: tuple[int, int]
    channels: int

    @property
    def relative_stage(self) -> float:
        return self.stage / (self.stage_count - 1) if self.stage_count > 1 else 0.0


def _fraction(index: int, count: int) -> float:
    """The relative depth of the ``index``-th of ``count`` sites: 0 for the first, 1 for the last."""
    return index / (count - 1) if count > 1 else 0.0


def _nearest(depth: float, depths: Sequence[float]) -> int:
    """The position in ``depths`` of the relative depth nearest to ``depth``; the earlier on a tie."""
    return min(range(len(depths)), key=lambda position: (abs(depth - depths[position]), position))


def site_index_at_depth(depth: int, depths: int, sites: int) -> int:
    """The site of a model with ``sites`` sites at step ``depth`` of a slider with ``depths`` steps
    (0 = first site, depths - 1 = last), so that models with different numbers of sites line up.

    Args:
        depth: the slider's step.
        depths: the slider's steps (the most sites any compared model has).
        sites: the model's sites (at least 1).

    Returns:
        The index of the site nearest in relative depth (the earlier on a tie), as ``match_sites``
        matches.

    Examples:
        >>> site_index_at_depth(1, 3, 5)  # the middle of three steps is the middle of five sites
        2
    """
    if sites < 1:
        raise ValueError("the model has no weighting sites")
    return _nearest(_fraction(depth, depths), [_fraction(index, sites) for index in range(sites)])


def site_depths(result: ProbeResult) -> list[SiteDepth]:
    """The depth of every site recorded by ``probe``, in forward order. Stages group sites by the
    spatial size of their output at the input size that was probed (larger first)."""
    shapes = [tuple(record.after.shape) for record in result.sites]
    for record, shape in zip(result.sites, shapes):
        if len(shape) != 4:
            raise ValueError(f"site {record.name!r} produced a {len(shape)}-D output {shape}; expected (N, C, H, W)")
    resolutions = [(shape[2], shape[3]) for shape in shapes]
    stages = sorted(set(resolutions), key=lambda size: size[0] * size[1], reverse=True)
    return [
        SiteDepth(
            name=record.name,
            index=index,
            relative_depth=_fraction(index, len(shapes)),
            stage=stages.index(resolution),
            stage_count=len(stages),
            resolution=resolution,
            channels=shape[1],
        )
        for index, (record, shape, resolution) in enumerate(zip(result.sites, shapes, resolutions))
    ]


def match_sites(
    depths_a: list[SiteDepth], depths_b: list[SiteDepth], by: Literal["depth", "stage"] = "depth"
) -> list[tuple[SiteDepth, SiteDepth]]:
    """For each site of model A, the site of model B nearest to it: by relative forward position
    (``by="depth"``), or by relative resolution stage with relative position breaking ties
    (``by="stage"``). Equal distances go to B's earlier site. Empty when either list is empty."""
    if by not in ("depth", "stage"):
        raise ValueError(f"by must be 'depth' or 'stage', got {by!r}")

    if not depths_b:
        return []
    if by == "depth":
        relative = [b.relative_depth for b in depths_b]
        return [(a, depths_b[_nearest(a.relative_depth, relative)]) for a in depths_a]

    def distance(a: SiteDepth, b: SiteDepth) -> tuple[float, ...]:
        return (abs(a.relative_stage - b.relative_stage), abs(a.relative_depth - b.relative_depth), b.index)

    return [(a, min(depths_b, key=lambda b: distance(a, b))) for a in depths_a]
