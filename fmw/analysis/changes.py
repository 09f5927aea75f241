"""What one weighting site changed on one image, reduced to what a reader can take in at a glance:
the mean map over channels before and after, and the few channels whose maps changed most.

"Changed most" is by the change of a map's RMS amplitude, ``|rms(after) - rms(before)|``, in the
maps' own units: a strong channel the gate switched off ranks first, a silent channel that stays
silent never does. Ties (a site without a gate changes nothing) go to the strongest channel before,
so a ``none`` site shows its strongest maps, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmw.analysis.layouts import StagedGates, StageSummary
from fmw.analysis.service import ENERGY_FLOOR, SiteSummary

__all__ = ["SHOWN_CHANNELS", "ChangedChannel", "SiteChange", "changed_channels", "kept_energy", "site_change"]

SHOWN_CHANNELS = 4  # channels a summary keeps by default: the Compare view draws each before and after


@dataclass(frozen=True)
class ChangedChannel:
    """One channel of a site: its index, RMS amplitude before and after, and its gate (the first
    stage with a channel axis, per channel its mean over positions; None when no stage has one)."""

    channel: int
    rms_before: float
    rms_after: float
    gate: float | None

    @property
    def ratio(self) -> float:
        """after / before RMS amplitude; 1 where the channel was silent before."""
        if self.rms_before**2 <= ENERGY_FLOOR:
            return 1.0
        return self.rms_after / self.rms_before


@dataclass
class SiteChange(StagedGates):
    """One site on one image, summarised: ``mean_before`` and ``mean_after`` (H, W) are the mean
    over all channels; ``before`` and ``after`` (k, H, W) are the maps of ``channels``, most
    changed first; ``stages`` are the site's own, each in its layout."""

    name: str
    kind: str
    channel_count: int
    mean_before: np.ndarray
    mean_after: np.ndarray
    channels: list[ChangedChannel]
    before: np.ndarray
    after: np.ndarray
    stages: list[StageSummary]
    kept_energy: float  # energy after / before over all channels (1 where the site was silent)


def changed_channels(site: SiteSummary, count: int) -> np.ndarray:
    """The ``count`` channel indices whose RMS amplitude the weighting changed most, most first;
    ties broken by the larger RMS amplitude before, then by the lower index."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rms_before = np.sqrt(site.energy_before.astype(np.float64))
    change = np.abs(np.sqrt(site.energy_after.astype(np.float64)) - rms_before)
    order = np.lexsort((np.arange(site.channels), -rms_before, -change))  # last key sorts first
    return order[: min(count, site.channels)]


def site_change(site: SiteSummary, count: int = SHOWN_CHANNELS) -> SiteChange:
    """``site`` reduced to its channel-mean maps and the ``count`` channels it changed most."""
    chosen = changed_channels(site, count)
    rms_before = np.sqrt(site.energy_before.astype(np.float64))
    rms_after = np.sqrt(site.energy_after.astype(np.float64))
    per_channel = site.channel_values
    channels = [
        ChangedChannel(
            channel=int(index),
            rms_before=float(rms_before[index]),
            rms_after=float(rms_after[index]),
            gate=None if per_channel is None else float(per_channel[index]),
        )
        for index in chosen
    ]
    return SiteChange(
        name=site.name,
        kind=site.kind,
        channel_count=site.channels,
        mean_before=site.before.mean(axis=0, dtype=np.float64).astype(np.float32),
        mean_after=site.after.mean(axis=0, dtype=np.float64).astype(np.float32),
        channels=channels,
        before=site.before[chosen].copy(),
        after=site.after[chosen].copy(),
        stages=site.stages,
        kept_energy=kept_energy(site),
    )


def kept_energy(site: SiteSummary) -> float:
    """The share of the maps' energy (mean square over channels and positions) the weighting kept:
    after / before, 1 where the site was silent."""
    before = float(site.energy_before.sum(dtype=np.float64))
    return 1.0 if before <= ENERGY_FLOOR else float(site.energy_after.sum(dtype=np.float64)) / before
