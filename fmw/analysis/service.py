"""The service layer behind the dashboard: find checkpoints, preprocess an RGB image for any model
(a ``fmw.models.ModelHandle``: an fmw checkpoint or any other), probe it, and summarise what every
weighting site did (predictions, maps, gates, energies).

Everything returned is numpy and dataclasses, so it can be cached, pickled and plotted without
torch. Every model's image is prepared by its one preprocessing (``fmw.models.preprocessing``:
an fmw checkpoint's centred window resized with Lanczos filtering, a zoo model's resize and centre
crop, a detector's whole image), at the model's input size or at another resolution.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from fmw.analysis.layouts import StagedGates, StageSummary, stage_summaries
from fmw.device import model_device
from fmw.io import CheckpointMetadata
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import ModelHandle, Preprocessing, count_multiply_adds, count_parameters
from fmw.models.tasks import TASKS, TopK, postprocessed
from fmw.models.tasks import Prediction as TaskPrediction
from fmw.models.zoo import seen_images
from fmw.sites import ProbeResult, SiteRecord, find_sites, probe

ORDERINGS = ("index", "gate", "energy change")
ENERGY_FLOOR = 1e-12
Result = TypeVar("Result")


@dataclass(frozen=True)
class Prediction:
    index: int
    class_name: str
    probability: float


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


@dataclass
class ImageAnalysis:
    """One checkpoint on one image: top-k predictions, every site, and the crop the model saw."""

    checkpoint: str
    resolution: tuple[int, int]
    predictions: list[Prediction]
    sites: list[SiteSummary]
    crop: np.ndarray  # what the model saw, uint8 RGB, for overlays (fmw: the centre crop before resizing)
    task_prediction: TaskPrediction | None = None  # what it predicted, as its task reads the output


@dataclass
class PreparedImage:
    """An image prepared for one model: the uint8 RGB ``crop`` it sees (for overlays), the
    normalised ``inputs`` (1, 3, H, W) and the ``resolution`` (H, W)."""

    crop: np.ndarray
    inputs: torch.Tensor
    resolution: tuple[int, int]


@dataclass
class SiteStatistics:
    """One site over a batch of images: every gate value per stage, each stage's mean gate (in
    its layout), per-channel mean and std of the first stage with a channel axis, and the
    per-channel mean energy ratio after/before."""

    name: str
    kind: str
    images: int
    gate_values: dict[str, np.ndarray] = field(default_factory=dict)
    mean_stages: list[StageSummary] = field(default_factory=list)
    channel_gate_mean: np.ndarray | None = None
    channel_gate_std: np.ndarray | None = None
    energy_ratio_mean: np.ndarray | None = None


@dataclass(frozen=True)
class ModelCard:
    """What the Models page shows for one checkpoint; accuracies in percent, None when unknown."""

    name: str
    weighting: str
    parameters: int
    multiply_adds: int
    input_size: tuple[int, int]
    top1: float | None
    top1_weighting_off: float | None


def list_checkpoints(directory: Path) -> list[Path]:
    """The ``.safetensors`` files in ``directory``: the family's kinds in display order, then others."""
    if not directory.is_dir():
        return []
    rank = {kind: position for position, kind in enumerate(WEIGHTING_LAYERS)}
    files = [path for path in directory.glob("*.safetensors") if path.is_file()]
    return sorted(files, key=lambda path: (rank.get(path.stem, len(rank)), path.stem))


def prepare_input(crop: np.ndarray, metadata: CheckpointMetadata, resolution: tuple[int, int]) -> torch.Tensor:
    """A (1, 3, H, W) float tensor: the centred window of ``crop`` with the aspect of ``resolution``
    (height, width; all of a crop ``center_crop`` made) resized to it and normalised with the
    checkpoint's mean and std."""
    return Preprocessing.centre_window(resolution, metadata.mean, metadata.std)(crop)


def summarise_site(record: SiteRecord, index: int = 0) -> SiteSummary:
    """Image ``index`` of the batch, copied out so that no summary keeps the whole batch alive."""

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


def class_names_of(source: ModelHandle) -> list[str]:
    return source.class_names


def prepare_image(source: ModelHandle, rgb: np.ndarray, resolution: int | None = None) -> PreparedImage:
    """``rgb`` (H, W, 3 uint8) as ``source`` expects it, by its one preprocessing
    (``fmw.models.preprocessing``), at ``resolution`` pixels square or, when None, at the model's own
    input size (the crop keeps its share of the image). A detector takes the whole image (its own
    transform resizes it: ``resolution`` does not apply) and its crop is the image as that transform
    resized and padded it, which its feature maps cover."""
    preprocessing = source.preprocessing
    if resolution is not None:
        preprocessing = preprocessing.at_resolution(resolution)
    minimum = source.minimum_input_size
    if resolution is not None and not preprocessing.whole_image and min(preprocessing.input_size) < minimum:
        raise ValueError(
            f"{source.label}: resolution {preprocessing.input_size} is too small; "
            f"this model needs at least {minimum} px"
        )
    inputs = preprocessing(rgb)
    crop = preprocessing.picture(rgb)
    if preprocessing.whole_image:
        seen = seen_images(source.model, [inputs[0]])
        crop = crop if seen is None else seen[0].pixels
        return PreparedImage(crop=crop, inputs=inputs, resolution=(crop.shape[0], crop.shape[1]))
    return PreparedImage(crop=crop, inputs=inputs, resolution=(inputs.shape[2], inputs.shape[3]))


def batch_inputs(source: ModelHandle, images: list[np.ndarray], resolution: int | None = None) -> torch.Tensor:
    """Several RGB images prepared for ``source`` as one normalised batch (N, 3, H, W)."""
    if not images:
        raise ValueError("no images to prepare; give at least one")
    return torch.cat([prepare_image(source, rgb, resolution).inputs for rgb in images])


def model_inputs(source: ModelHandle, prepared: list[PreparedImage]) -> torch.Tensor | list[torch.Tensor]:
    """Prepared images as ``source``'s model takes them: a list of whole images for a detector
    (each at its own size), one normalised batch (N, 3, H, W) otherwise."""
    if source.preprocessing.whole_image:
        return [image.inputs[0] for image in prepared]
    return torch.cat([image.inputs for image in prepared])


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
    task, class_names = task_of(source), class_names_of(source)
    output = postprocessed(postprocess_of(source), result.output)
    outcome = TASKS[task].predictions(output, index, class_names, top_k, threshold)
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
    """Probe ``loaded``'s model (any ``ModelHandle``) on ``rgb`` (H, W, 3 uint8) at
    ``resolution`` pixels square, or at the model's own input size when None; returns predictions
    (a detector's boxes scoring ``threshold`` or more) and every site's summary."""
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
    """``analyse_image`` for several images, probed ``batch_size`` at a time (one forward pass each;
    a detector one image at a time, so that each image's crop is the padded image its maps cover)."""
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


@dataclass
class DeviceRun(Generic[Result]):
    """What ``run_with_memory_fallback`` computed, where, in batches of what size, and the notice
    to show the user when it had to step down (None when the first attempt succeeded)."""

    value: Result
    device: str
    batch_size: int
    notice: str | None = None


def release_cuda_memory() -> None:
    """Drop unreachable tensors and return the CUDA caching allocator's free blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_memory_fallback(work: Callable[[str, int], Result], device: str, batch_size: int = 1) -> DeviceRun[Result]:
    """``work(device, batch_size)``; on a CUDA out-of-memory error, release the memory and try
    again with half the batch, down to 1, then on the CPU. The notice says what was done.
    Out-of-memory on the CPU itself is not caught."""
    steps: list[str] = []
    while True:
        try:
            value = work(device, batch_size)
        except torch.cuda.OutOfMemoryError:
            pass  # released below, once the exception (and the frames holding tensors) is gone
        else:
            notice = None
            if steps:
                notice = f"The GPU ran out of memory, so this ran {' then '.join(steps)}. Results are the same."
            return DeviceRun(value=value, device=device, batch_size=batch_size, notice=notice)
        release_cuda_memory()
        if torch.device(device).type != "cuda":
            raise torch.cuda.OutOfMemoryError(f"out of memory on {device} even with a batch of {batch_size}")
        if batch_size > 1:
            batch_size //= 2
            steps.append(f"in batches of {batch_size}")
        else:
            device = "cpu"
            steps.append("on the CPU")


def analyse_images_on_device(
    load: Callable[[str], ModelHandle],
    rgbs: list[np.ndarray],
    device: str,
    resolution: int | None = None,
    name: str | None = None,
    batch_size: int = 16,
    threshold: float = 0.5,
) -> DeviceRun[list[ImageAnalysis]]:
    """``analyse_images`` on ``device`` with the out-of-memory fallback; ``load(device)`` gives the
    model on a device (the dashboard's cached loader), so falling back never moves a shared model."""
    return run_with_memory_fallback(
        lambda on, batch: analyse_images(load(on), rgbs, resolution, name=name, batch_size=batch, threshold=threshold),
        device,
        batch_size,
    )


def available_orderings(site: SiteSummary) -> tuple[str, ...]:
    """The channel orderings that mean something for ``site`` ("gate" needs a gate with a channel axis)."""
    return ORDERINGS if site.channel_values is not None else tuple(o for o in ORDERINGS if o != "gate")


def channel_order(site: SiteSummary, by: str) -> np.ndarray:
    """Channel indices in display order: by index; by gate (the first stage with a channel axis,
    per channel its mean over positions), largest first; or by energy change, the channel whose
    energy weighting changed most (|log ratio|) first. Stable on ties."""
    if by == "index":
        return np.arange(site.channels)
    if by == "gate":
        values = site.channel_values
        if values is None:
            raise ValueError(f"site {site.name!r} ({site.kind}) has no gate with a channel axis to order by")
        return np.argsort(-values, kind="stable")
    if by == "energy change":
        return np.argsort(-np.abs(np.log(site.energy_ratio)), kind="stable")
    raise ValueError(f"unknown channel ordering {by!r}; expected one of: {', '.join(ORDERINGS)}")


def site_index_at_depth(depth: int, depths: int, sites: int) -> int:
    """The site at relative depth ``depth`` of ``depths`` (0 = first, depths-1 = last) in a
    model with ``sites`` sites, so models with different numbers of sites line up by depth."""
    if sites < 1:
        raise ValueError("the model has no weighting sites")
    if depths <= 1:
        return 0
    return round(depth * (sites - 1) / (depths - 1))


def batch_statistics(analyses: list[ImageAnalysis]) -> list[SiteStatistics]:
    """Per site, over the analyses of several images by one checkpoint (same sites, same order)."""
    if not analyses:
        return []
    statistics = []
    for position, first in enumerate(analyses[0].sites):
        sites = [analysis.sites[position] for analysis in analyses]
        gate_values = {stage: np.concatenate([s.gates[stage].ravel() for s in sites]) for stage in first.gates}
        for order, stage in enumerate(first.stages):
            shapes = sorted({s.stages[order].gate.shape for s in sites})
            if len(shapes) > 1:
                raise ValueError(
                    f"the {stage.name} gate of {first.name} has a different size on different images ({shapes[0]} "
                    f"and {shapes[-1]}), as a detector's does on images of different shapes, so it has no mean; "
                    "use images of one shape"
                )
        mean_stages = [
            replace(stage, gate=np.stack([s.stages[order].gate for s in sites]).mean(axis=0).astype(np.float32))
            for order, stage in enumerate(first.stages)
        ]
        present = [s.channel_values for s in sites if s.channel_values is not None]  # all or none (same sites)
        channel_gates = np.stack(present) if present else None
        statistics.append(
            SiteStatistics(
                name=first.name,
                kind=first.kind,
                images=len(sites),
                gate_values=gate_values,
                mean_stages=mean_stages,
                channel_gate_mean=None if channel_gates is None else channel_gates.mean(axis=0),
                channel_gate_std=None if channel_gates is None else channel_gates.std(axis=0),
                energy_ratio_mean=np.stack([s.energy_ratio for s in sites]).mean(axis=0),
            )
        )
    return statistics


def _percent(value: object) -> float | None:
    """Metrics are stored as fractions (0..1) or percents; the Models page shows percents."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) * 100.0 if 0.0 <= value <= 1.0 else float(value)


def model_card(loaded: ModelHandle, name: str) -> ModelCard:
    """Parameters, multiply-adds at the model's input size, and the recorded accuracies (fmw
    checkpoints only); the weighting its checkpoint declares, else the kinds of its sites."""
    weighting = loaded.weighting
    if weighting is None:
        example = torch.zeros(1, loaded.in_channels, *loaded.input_size, device=model_device(loaded.model))
        kinds = sorted({site.kind for site in find_sites(loaded.model, example)})
        weighting = f"{loaded.family}: {', '.join(kinds) or 'none'}"
    metrics = loaded.metrics
    return ModelCard(
        name=name,
        weighting=weighting,
        parameters=count_parameters(loaded.model),
        multiply_adds=count_multiply_adds(loaded.model, loaded.input_size, loaded.in_channels),
        input_size=loaded.input_size,
        top1=_percent(metrics.get("test_top1")),
        top1_weighting_off=_percent(metrics.get("test_top1_weighting_off")),
    )
