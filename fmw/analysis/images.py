"""An image through a model: ``analyse_image`` probes any ``fmw.models.ModelHandle`` on an RGB
image and returns what it predicted and a ``SiteSummary`` of every weighting site, as numpy and
dataclasses, so that results cache, pickle and plot without torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmw.analysis.preparation import PreparedImage, model_inputs, prepare_image
from fmw.analysis.summaries import SiteSummary, summarise_site
from fmw.models import ModelHandle
from fmw.models.tasks import TASKS, TopK, postprocessed
from fmw.models.tasks import Prediction as TaskPrediction
from fmw.sites import ProbeResult, probe

__all__ = [
    "ImageAnalysis",
    "Prediction",
    "analyse_image",
    "analyse_images",
    "class_names_of",
    "postprocess_of",
    "task_of",
]


@dataclass(frozen=True)
class Prediction:
    """One of a classifier's top-k classes: its index, name and probability."""

    index: int
    class_name: str
    probability: float


@dataclass
class ImageAnalysis:
    """One checkpoint on one image: top-k predictions, every site, and the crop the model saw."""

    checkpoint: str
    resolution: tuple[int, int]
    predictions: list[Prediction]
    sites: list[SiteSummary]
    crop: np.ndarray  # what the model saw, uint8 RGB, for overlays (fmw: the centre crop before resizing)
    task_prediction: TaskPrediction | None = None  # what it predicted, as its task reads the output


def class_names_of(source: ModelHandle) -> list[str]:
    """``source``'s class names (``ModelHandle.class_names``)."""
    return source.class_names


def task_of(source: ModelHandle) -> str:
    """What ``source``'s output means (``fmw.models.tasks.TASKS``): an fmw checkpoint classifies."""
    return source.task


def postprocess_of(source: ModelHandle) -> Callable[[Any], Any] | None:
    """The function turning ``source``'s raw output into its task's structure (None: the output is it)."""
    return source.postprocess


def _analysis_of(
    result: ProbeResult,
    index: int,
    prepared: PreparedImage,
    source: ModelHandle,
    top_k: int,
    name: str,
    threshold: float,
) -> ImageAnalysis:
    """Image ``index`` of a probed batch: its predictions as its task makes them (a classifier's
    top-k also as ``predictions``; a detector's boxes scoring ``threshold`` or more) and every
    site's summary."""
    output = postprocessed(postprocess_of(source), result.output)
    outcome = TASKS[task_of(source)].predictions(output, index, class_names_of(source), top_k, threshold)
    predictions = (
        [Prediction(i, class_name, p) for i, class_name, p in outcome.classes] if isinstance(outcome, TopK) else []
    )
    return ImageAnalysis(
        checkpoint=name,
        resolution=prepared.resolution,
        predictions=predictions,
        sites=[summarise_site(record, index) for record in result.sites],
        crop=prepared.crop,
        task_prediction=outcome,
    )


def analyse_image(
    loaded: ModelHandle,
    rgb: np.ndarray,
    resolution: int | None = None,
    top_k: int = 5,
    name: str | None = None,
    threshold: float = 0.5,
) -> ImageAnalysis:
    """Probe ``loaded``'s model on one image and summarise every weighting site.

    Args:
        loaded: any model, as ``fmw.load_model`` opens it.
        rgb: the image, (H, W, 3) uint8.
        resolution: pixels square, or None for the model's own input size.
        top_k: how many classes a classifier's ``predictions`` keep.
        name: the name results carry (default: the model's source).
        threshold: the score a detector's box needs to be kept.

    Returns:
        The predictions (``task_prediction`` for every task; ``predictions`` for a classifier), one
        ``SiteSummary`` per site in forward order, and the crop the model saw.

    Examples:
        >>> import fmw
        >>> handle = fmw.load_model("cbam")  # a shipped checkpoint, by name
        >>> rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        >>> analysis = analyse_image(handle, rgb)
        >>> [site.name for site in analysis.sites]
        ['stages.0.weighting', 'stages.1.weighting', 'stages.2.weighting']
        >>> len(analysis.predictions), analysis.predictions[0].class_name in handle.class_names
        (5, True)
        >>> analysis.crop.shape, analysis.resolution  # the centred 48 x 48 window, seen at 32 x 32
        ((48, 48, 3), (32, 32))
    """
    return analyse_images(loaded, [rgb], resolution, top_k, name, threshold=threshold)[0]


def analyse_images(
    loaded: ModelHandle,
    rgbs: list[np.ndarray],
    resolution: int | None = None,
    top_k: int = 5,
    name: str | None = None,
    batch_size: int = 16,
    threshold: float = 0.5,
) -> list[ImageAnalysis]:
    """``analyse_image`` for several images, probed ``batch_size`` at a time.

    One forward pass per batch; a detector takes one image at a time, so that each image's crop is
    the padded image its maps cover.

    Args:
        loaded, resolution, top_k, name, threshold: as for ``analyse_image``.
        rgbs: the images, (H, W, 3) uint8 each.
        batch_size: images per forward pass (at least 1).

    Returns:
        One ``ImageAnalysis`` per image, in order.

    Examples:
        >>> import fmw
        >>> rgbs = [np.full((32, 32, 3), value, np.uint8) for value in (0, 128, 255)]
        >>> analyses = analyse_images(fmw.load_model("eca"), rgbs, batch_size=2)  # two forward passes
        >>> len(analyses), [len(analysis.sites) for analysis in analyses]
        (3, [3, 3, 3])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    whole = loaded.preprocessing.whole_image
    batch_size = 1 if whole else batch_size
    analyses = []
    for start in range(0, len(rgbs), batch_size):
        prepared = [prepare_image(loaded, rgb, resolution) for rgb in rgbs[start : start + batch_size]]
        result = probe(loaded.model, model_inputs(loaded, prepared))
        analyses += [
            _analysis_of(result, index, image, loaded, top_k, name or loaded.source, threshold)
            for index, image in enumerate(prepared)
        ]
    return analyses
