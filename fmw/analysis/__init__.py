"""What fmw computes from probes: the dashboard's service layer (re-exported here), and in its own
modules attribution, gate statistics, accuracy, predictions, costs and model cards."""

from __future__ import annotations

from fmw.analysis.layouts import StageSummary
from fmw.analysis.service import (
    ENERGY_FLOOR,
    ORDERINGS,
    DeviceRun,
    ImageAnalysis,
    ModelCard,
    Prediction,
    PreparedImage,
    SiteStatistics,
    SiteSummary,
    analyse_image,
    analyse_images,
    analyse_images_on_device,
    available_orderings,
    batch_inputs,
    batch_statistics,
    channel_order,
    class_names_of,
    list_checkpoints,
    model_card,
    prepare_image,
    prepare_input,
    release_cuda_memory,
    run_with_memory_fallback,
    site_index_at_depth,
    summarise_site,
)
from fmw.models.handle import ModelHandle
from fmw.models.preprocessing import center_crop

__all__ = [
    "ENERGY_FLOOR",
    "ORDERINGS",
    "DeviceRun",
    "ImageAnalysis",
    "ModelCard",
    "ModelHandle",
    "Prediction",
    "PreparedImage",
    "SiteStatistics",
    "SiteSummary",
    "StageSummary",
    "analyse_image",
    "analyse_images",
    "analyse_images_on_device",
    "available_orderings",
    "batch_inputs",
    "batch_statistics",
    "center_crop",
    "channel_order",
    "class_names_of",
    "list_checkpoints",
    "model_card",
    "prepare_image",
    "prepare_input",
    "release_cuda_memory",
    "run_with_memory_fallback",
    "site_index_at_depth",
    "summarise_site",
]
