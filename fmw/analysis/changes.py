"""What one weighting site changed on one image, reduced to what a reader can take in at a glance:
the mean map over channels before and after, the few channels whose maps changed most, and the
orders in which a site's channels can be listed (``channel_order``).

"Changed most" has one definition, used by Compare, the Layer explorer's "energy change" order, the
notebook and the report: the change of a map's RMS amplitude (the square root of its energy, the
mean square), ``|rms(after) - rms(before)|``, in the maps' own units. A strong channel the gate
switched off ranks first; a near-silent channel ranks low whatever its ratio (a ratio such as
``|log(after / before)|`` would put a faint channel whose energy went from 1e-10 to 1e-8 above a
strong one the gate halved, and every channel switched fully off at infinity, tied), so the
channels shown first are the ones whose change a reader can see. Ties (a site without a gate
changes nothing) go to the strongest channel before, then the lower index, so a ``none`` site shows
its strongest maps, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmw.analysis.layouts import StagedGates, StageSummary
from fmw.analysis.summaries import ENERGY_FLOOR, SiteSummary

__all__ = [
    "ORDERINGS",
    "SHOWN_CHANNELS",
    "ChangedChannel",
    "SiteChange",
    "available_orderings",
    "change_order",
    "changed_channels",
    "channel_order",
    "kept_energy",
    "site_change",
]

ORDERINGS = ("index", "gate", "energy change")
"""The orders ``channel_order`` lists a site's channels in."""

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


def change_order(site: SiteSummary) -> np.ndarray:
    """Every channel index of ``site``, the one whose RMS amplitude the weighting changed most
    first (the module's one definition of "changed most"); ties broken by the larger RMS amplitude
    before, then by the lower index."""
    rms_before = np.sqrt(site.energy_before.astype(np.float64))
    change = np.abs(np.sqrt(site.energy_after.astype(np.float64)) - rms_before)
    return np.lexsort((np.arange(site.channels), -rms_before, -change))  # last key sorts first


def changed_channels(site: SiteSummary, count: int) -> np.ndarray:
    """The ``count`` channels the weighting changed most, most first.

    Args:
        site: one site on one image.
        count: how many (at least 1; fewer when the site has fewer channels).

    Returns:
        Channel indices: the first ``count`` of ``change_order(site)``.

    Examples:
        >>> import torch, fmw
        >>> from fmw.analysis import summarise_site
        >>> layer = fmw.create_weighting("scale", 4)  # y = x * s, s one learned value per channel
        >>> layer.gate.weight.data = torch.tensor([1.0, 0.5, 0.0, 0.9])
        >>> site = summarise_site(fmw.probe(layer, torch.ones(1, 4, 2, 2)).sites[0])
        >>> changed_channels(site, 2)  # RMS amplitude 1 -> 0, then 1 -> 0.5
        array([2, 1])
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return change_order(site)[: min(count, site.channels)]


def available_orderings(site: SiteSummary) -> tuple[str, ...]:
    """The channel orderings that mean something for ``site``.

    Args:
        site: one site on one image.

    Returns:
        ``ORDERINGS``, without "gate" when no stage of the site has a channel axis.

    Examples:
        >>> import fmw
        >>> from fmw.analysis import analyse_image
        >>> rgb = np.zeros((32, 32, 3), np.uint8)
        >>> available_orderings(analyse_image(fmw.load_model("cbam"), rgb).sites[0])
        ('index', 'gate', 'energy change')
        >>> available_orderings(analyse_image(fmw.load_model("spatial"), rgb).sites[0])  # one gate per position
        ('index', 'energy change')
    """
    return ORDERINGS if site.channel_values is not None else tuple(o for o in ORDERINGS if o != "gate")


def channel_order(site: SiteSummary, by: str) -> np.ndarray:
    """``site``'s channel indices in display order.

    Args:
        site: one site on one image.
        by: "index"; "gate" (the first stage with a channel axis, per channel its mean over
            positions, largest first; stable on ties); or "energy change" (``change_order``: the
            channel the weighting changed most first).

    Returns:
        A permutation of ``range(site.channels)``.

    Raises:
        ValueError: an unknown ordering, or "gate" for a site with no gate over channels.

    Examples:
        >>> import torch, fmw
        >>> from fmw.analysis import summarise_site
        >>> layer = fmw.create_weighting("scale", 4)
        >>> layer.gate.weight.data = torch.tensor([1.0, 0.5, 0.0, 0.9])
        >>> record = fmw.probe(layer, torch.ones(1, 4, 2, 2)).sites[0]
        >>> channel_order(summarise_site(record), "gate"), channel_order(summarise_site(record), "energy change")
        (array([0, 3, 1, 2]), array([2, 1, 3, 0]))
    """
    if by == "index":
        return np.arange(site.channels)
    if by == "gate":
        values = site.channel_values
        if values is None:
            raise ValueError(f"site {site.name!r} ({site.kind}) has no gate with a channel axis to order by")
        return np.argsort(-values, kind="stable")
    if by == "energy change":
        return change_order(site)
    raise ValueError(f"unknown channel ordering {by!r}; expected one of: {', '.join(ORDERINGS)}")


def site_change(site: SiteSummary, count: int = SHOWN_CHANNELS) -> SiteChange:
    """``site`` reduced to what Compare draws.

    Args:
        site: one site on one image (``analyse_image(...).sites[i]``).
        count: how many of the channels it changed most to keep.

    Returns:
        The channel-mean maps before and after, the ``count`` channels it changed most (their maps,
        RMS amplitudes and gates), its stages and the share of energy it kept.

    Examples:
        >>> import torch, fmw
        >>> from fmw.analysis import summarise_site
        >>> halving = fmw.create_weighting("scale", 3)
        >>> halving.gate.weight.data = torch.tensor([1.0, 0.5, 0.0])
        >>> change = site_change(summarise_site(fmw.probe(halving, torch.ones(1, 3, 4, 4)).sites[0]), count=2)
        >>> [(channel.channel, channel.rms_before, channel.rms_after, channel.gate) for channel in change.channels]
        [(2, 1.0, 0.0, 0.0), (1, 1.0, 0.5, 0.5)]
        >>> round(change.kept_energy, 4), change.mean_after.shape  # (1 + 0.25 + 0) / 3 of the energy kept
        (0.4167, (4, 4))
    """
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
