"""One weighting site on one image as numpy: ``SiteSummary`` (maps before and after, the gates of
its stages, per-channel energies) and ``summarise_site``, which copies it out of a probe's record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmw.analysis.layouts import StagedGates, StageSummary, stage_summaries
from fmw.sites import SiteRecord

__all__ = ["ENERGY_FLOOR", "SiteSummary", "summarise_site"]

ENERGY_FLOOR = 1e-12
"""A channel whose energy (mean square) is at most this counts as silent: its ratios are 1."""


@dataclass
class SiteSummary(StagedGates):
    """One weighting site on one image: maps (C, H, W) before and after, the ``stages`` it applied
    in order (each gate with its layout's axes, ``fmw.analysis.layouts``) and the per-channel
    energy (mean square over the map) on both sides."""

    name: str
    kind: str
    before: np.ndarray
    after: np.ndarray
    stages: list[StageSummary]
    energy_before: np.ndarray
    energy_after: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.before.shape[0])

    @property
    def difference(self) -> np.ndarray:
        return self.after - self.before

    @property
    def energy_ratio(self) -> np.ndarray:
        """after / before energy per channel; 1 where the channel was silent before."""
        silent = self.energy_before <= ENERGY_FLOOR
        return np.where(silent, 1.0, self.energy_after / np.maximum(self.energy_before, ENERGY_FLOOR)).astype(
            np.float32
        )


def summarise_site(record: SiteRecord, index: int = 0) -> SiteSummary:
    """Image ``index`` of a probed batch at one site, copied out so that no summary keeps the whole
    batch alive.

    Args:
        record: one of ``fmw.probe(...).sites``.
        index: which image of the batch (a gate that is a parameter, with N = 1, serves every image).

    Returns:
        The site's maps, gates and energies for that image, as numpy.

    Examples:
        >>> import fmw
        >>> result = fmw.probe(fmw.load_model("cbam").model, torch.rand(2, 3, 32, 32))
        >>> summary = summarise_site(result.sites[0], index=1)  # the second image
        >>> summary.before.shape, [(stage.name, stage.gate.shape) for stage in summary.stages]
        ((64, 15, 15), [('channel', (64,)), ('spatial', (15, 15))])
        >>> bool((summary.energy_ratio <= 1).all())  # after / before per channel: sigmoid gates only attenuate
        True
    """

    def of_image(tensor: torch.Tensor) -> np.ndarray:
        return tensor[index if tensor.shape[0] > 1 else 0].float().numpy().copy()  # a parameter gate has N = 1

    before, after = of_image(record.before), of_image(record.after)
    return SiteSummary(
        name=record.name,
        kind=record.kind,
        before=before,
        after=after,
        stages=stage_summaries(record.stages, index),
        energy_before=np.square(before, dtype=np.float64).mean(axis=(1, 2)).astype(np.float32),
        energy_after=np.square(after, dtype=np.float64).mean(axis=(1, 2)).astype(np.float32),
    )
