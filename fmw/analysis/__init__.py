"""What fmw computes from probes, one concern per module.

- ``images``: ``analyse_image`` / ``analyse_images``, an image through any model, every site summarised
  (``summaries``: ``SiteSummary``); ``preparation``: an image as a model takes it (``prepare_image``);
- ``changes``: the channels a weighting changed most (``site_change``, ``channel_order``);
- ``batch``: statistics over the analyses of several images (distributions, and gate statistics by
  predicted class); ``stats`` and ``streaming``: gate statistics over datasets;
- ``memory``: the out-of-memory fallback; ``cards``: model cards; ``checkpoints``: the checkpoints of a directory;
- ``attribution`` (the registry of captum methods) and ``ablation`` (switching weighting off), which
  load captum and so are imported from their modules.

The names below are the API users call; the dashboard, the command line, the notebook and the
report read the same ones.

Examples:
    >>> import numpy as np
    >>> import fmw
    >>> from fmw.analysis import analyse_image, site_change
    >>> rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    >>> analysis = analyse_image(fmw.load_model("cbam"), rgb)
    >>> change = site_change(analysis.sites[0])  # what Compare draws for the first site
    >>> change.name, len(change.channels), change.before.shape
    ('stages.0.weighting', 4, (4, 15, 15))
"""

from __future__ import annotations

from fmw.analysis.batch import SiteStatistics, batch_gate_statistics, batch_statistics
from fmw.analysis.cards import ModelCard, model_card
from fmw.analysis.changes import (
    ORDERINGS,
    SiteChange,
    available_orderings,
    changed_channels,
    channel_order,
    site_change,
)
from fmw.analysis.checkpoints import list_checkpoints
from fmw.analysis.images import ImageAnalysis, Prediction, analyse_image, analyse_images
from fmw.analysis.images import class_names_of as class_names_of
from fmw.analysis.layouts import StageSummary
from fmw.analysis.memory import DeviceRun, analyse_images_on_device, run_with_memory_fallback
from fmw.analysis.memory import release_cuda_memory as release_cuda_memory
from fmw.analysis.preparation import PreparedImage, batch_inputs, prepare_image
from fmw.analysis.preparation import prepare_input as prepare_input
from fmw.analysis.summaries import ENERGY_FLOOR as ENERGY_FLOOR
from fmw.analysis.summaries import SiteSummary, summarise_site
from fmw.models.handle import ModelHandle
from fmw.models.preprocessing import center_crop as center_crop
from fmw.sites.depth import site_index_at_depth

__all__ = [
    "ORDERINGS",
    "DeviceRun",
    "ImageAnalysis",
    "ModelCard",
    "ModelHandle",
    "Prediction",
    "PreparedImage",
    "SiteChange",
    "SiteStatistics",
    "SiteSummary",
    "StageSummary",
    "analyse_image",
    "analyse_images",
    "analyse_images_on_device",
    "available_orderings",
    "batch_gate_statistics",
    "batch_inputs",
    "batch_statistics",
    "changed_channels",
    "channel_order",
    "list_checkpoints",
    "model_card",
    "prepare_image",
    "run_with_memory_fallback",
    "site_change",
    "site_index_at_depth",
    "summarise_site",
]
