"""The service layer behind the dashboard: find checkpoints, preprocess an RGB image for an fmw
checkpoint or a zoo model, probe it, and summarise what every weighting site did (predictions, maps,
gates, energies).

Everything returned is numpy and dataclasses, so it can be cached, pickled and plotted without
torch. Preprocessing: centre-crop the image to the model's aspect (square for fmw models), resize
the crop to the analysis resolution with Lanczos filtering, then normalise with the checkpoint's
mean and std; the crop keeps the whole centre of a photo, as CIFAR-style models expect objects
filling the frame, and a plain resize would distort them. Zoo models (torchvision, timm, uploaded
state dicts) keep their own preprocessing (resize the short side, centre-crop, normalise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fmw.checkpoint import CheckpointMetadata, LoadedCheckpoint
from fmw.models import count_multiply_adds, count_parameters
from fmw.probe import SiteRecord, probe
from fmw.sites import find_sites
from fmw.zoo import ZooModel

__all__ = [
    "CHECKPOINT_DIRECTORY_VARIABLE",
    "ORDERINGS",
    "Prediction",
    "SiteSummary",
    "ImageAnalysis",
    "SiteStatistics",
    "ModelCard",
    "Analysable",
    "PreparedImage",
    "checkpoint_directory",
    "list_checkpoints",
    "center_crop",
    "prepare_input",
    "class_names_of",
    "prepare_image",
    "batch_inputs",
    "analyse_image",
    "available_orderings",
    "channel_order",
    "site_index_at_depth",
    "batch_statistics",
    "model_card",
]

CHECKPOINT_DIRECTORY_VARIABLE = "FMW_CHECKPOINT_DIR"
REPOSITORY = Path(__file__).resolve().parents[1]
WEIGHTING_DISPLAY_ORDER = ("none", "scale", "spatial", "channel", "cbam", "eca")
ORDERINGS = ("index", "gate", "energy change")
ENERGY_FLOOR = 1e-12
ZOO_MINIMUM_SIZE = 32  # torchvision and timm networks downsample by 32

Analysable = LoadedCheckpoint | ZooModel
"""What can be analysed: an fmw checkpoint or a model from ``fmw.zoo``."""


@dataclass(frozen=True)
class Prediction:
    index: int
    class_name: str
    probability: float


@dataclass
class SiteSummary:
    """One weighting site on one image: maps (C, H, W) before and after, the gates it applied
    (channel gate (C,), spatial gate (H, W); None when the kind has no such stage) and the
    per-channel energy (mean square over the map) on both sides."""

    name: str
    kind: str
    before: np.ndarray
    after: np.ndarray
    channel_gate: np.ndarray | None
    spatial_gate: np.ndarray | None
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
        return np.where(silent, 1.0, self.energy_after / np.maximum(self.energy_before, ENERGY_FLOOR)).astype(np.float32)

    @property
    def gates(self) -> dict[str, np.ndarray]:
        stages = {"channel": self.channel_gate, "spatial": self.spatial_gate}
        return {stage: gate for stage, gate in stages.items() if gate is not None}


@dataclass
class ImageAnalysis:
    """One checkpoint on one image: top-k predictions, every site, and the crop the model saw."""

    checkpoint: str
    resolution: tuple[int, int]
    predictions: list[Prediction]
    sites: list[SiteSummary]
    crop: np.ndarray  # the centre crop (uint8 RGB) at working resolution, for overlays


@dataclass
class PreparedImage:
    """An image prepared for one model: the uint8 RGB ``crop`` it sees (for overlays), the
    normalised ``inputs`` (1, 3, H, W) and the ``resolution`` (H, W)."""

    crop: np.ndarray
    inputs: torch.Tensor
    resolution: tuple[int, int]


@dataclass
class SiteStatistics:
    """One site over a batch of images: every gate value per stage, per-channel mean and std of
    the channel gate, and the per-channel mean energy ratio after/before."""

    name: str
    kind: str
    images: int
    gate_values: dict[str, np.ndarray] = field(default_factory=dict)
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


def checkpoint_directory() -> Path:
    """``$FMW_CHECKPOINT_DIR`` when set, else the repository's ``checkpoints/``."""
    configured = os.environ.get(CHECKPOINT_DIRECTORY_VARIABLE, "").strip()
    return Path(configured).expanduser() if configured else REPOSITORY / "checkpoints"


def list_checkpoints(directory: Path) -> list[Path]:
    """The ``.safetensors`` files in ``directory``: the family's kinds in display order, then others."""
    if not directory.is_dir():
        return []
    rank = {kind: position for position, kind in enumerate(WEIGHTING_DISPLAY_ORDER)}
    files = [path for path in directory.glob("*.safetensors") if path.is_file()]
    return sorted(files, key=lambda path: (rank.get(path.stem, len(rank)), path.stem))


def center_crop(rgb: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """The largest centred window of ``rgb`` with width / height = ``aspect``."""
    height, width = rgb.shape[:2]
    crop_width = min(width, round(height * aspect))
    crop_height = min(height, round(crop_width / aspect))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return rgb[top : top + crop_height, left : left + crop_width]


def prepare_input(crop: np.ndarray, metadata: CheckpointMetadata, resolution: tuple[int, int]) -> torch.Tensor:
    """A (1, 3, H, W) float tensor: ``crop`` resized to ``resolution`` (height, width) and
    normalised with the checkpoint's mean and std."""
    height, width = resolution
    resized = Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(metadata.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(metadata.std, dtype=torch.float32).view(-1, 1, 1)
    return ((pixels - mean) / std).unsqueeze(0)


def _summarise(record: SiteRecord) -> SiteSummary:
    before = record.before[0].float().numpy()
    after = record.after[0].float().numpy()
    channel = record.gates.get("channel")
    spatial = record.gates.get("spatial")
    return SiteSummary(
        name=record.name,
        kind=record.kind,
        before=before,
        after=after,
        channel_gate=None if channel is None else channel[0].float().reshape(-1).numpy(),
        spatial_gate=None if spatial is None else spatial[0, 0].float().numpy(),
        energy_before=np.square(before, dtype=np.float64).mean(axis=(1, 2)).astype(np.float32),
        energy_after=np.square(after, dtype=np.float64).mean(axis=(1, 2)).astype(np.float32),
    )


def class_names_of(source: Analysable) -> list[str]:
    return source.class_names if isinstance(source, ZooModel) else source.metadata.class_names


def _zoo_image(source: ZooModel, rgb: np.ndarray, resolution: int | None) -> PreparedImage:
    """The zoo model's own preprocessing; at another ``resolution`` the crop keeps its share of the image."""
    preprocessing = source.preprocessing
    if resolution is not None:
        if resolution < ZOO_MINIMUM_SIZE:
            raise ValueError(f"{source.label}: resolution {resolution} is too small; use at least {ZOO_MINIMUM_SIZE} px")
        scale = preprocessing.resize_size / preprocessing.crop_size
        preprocessing = replace(preprocessing, resize_size=round(resolution * scale), crop_size=resolution)
    inputs = preprocessing.transform()(Image.fromarray(rgb)).unsqueeze(0)
    mean = torch.tensor(preprocessing.mean).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)
    pixels = ((inputs * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    crop = np.ascontiguousarray(pixels[0].permute(1, 2, 0).numpy())
    return PreparedImage(crop=crop, inputs=inputs, resolution=(inputs.shape[2], inputs.shape[3]))


def prepare_image(source: Analysable, rgb: np.ndarray, resolution: int | None = None) -> PreparedImage:
    """``rgb`` (H, W, 3 uint8) as ``source`` expects it, at ``resolution`` pixels square or, when
    None, at the model's own input size: fmw checkpoints by ``center_crop`` and ``prepare_input``,
    zoo models by their preprocessing (resize, centre-crop, normalise)."""
    if isinstance(source, ZooModel):
        return _zoo_image(source, rgb, resolution)
    metadata = source.metadata
    size = metadata.input_size if resolution is None else (resolution, resolution)
    minimum = 2 ** len(metadata.architecture.widths)
    if min(size) < minimum:
        raise ValueError(f"{source.source}: resolution {size} is too small; this model needs at least {minimum} px")
    crop = np.ascontiguousarray(center_crop(rgb, aspect=size[1] / size[0]))
    return PreparedImage(crop=crop, inputs=prepare_input(crop, metadata, size), resolution=size)


def batch_inputs(source: Analysable, images: list[np.ndarray], resolution: int | None = None) -> torch.Tensor:
    """Several RGB images prepared for ``source`` as one normalised batch (N, 3, H, W)."""
    if not images:
        raise ValueError("no images to prepare; give at least one")
    return torch.cat([prepare_image(source, rgb, resolution).inputs for rgb in images])


def analyse_image(
    loaded: Analysable,
    rgb: np.ndarray,
    resolution: int | None = None,
    top_k: int = 5,
    name: str | None = None,
) -> ImageAnalysis:
    """Probe ``loaded``'s model (an fmw checkpoint or a zoo model) on ``rgb`` (H, W, 3 uint8) at
    ``resolution`` pixels square, or at the model's own input size when None; returns predictions
    and every site's summary."""
    prepared = prepare_image(loaded, rgb, resolution)
    class_names = class_names_of(loaded)
    result = probe(loaded.model, prepared.inputs)
    probabilities = result.logits[0].float().softmax(dim=0)
    values, indices = probabilities.topk(min(top_k, probabilities.numel()))
    predictions = [
        Prediction(index=int(i), class_name=class_names[int(i)], probability=float(p))
        for p, i in zip(values, indices)
    ]
    return ImageAnalysis(
        checkpoint=name or loaded.source,
        resolution=prepared.resolution,
        predictions=predictions,
        sites=[_summarise(record) for record in result.sites],
        crop=prepared.crop,
    )


def available_orderings(site: SiteSummary) -> tuple[str, ...]:
    """The channel orderings that mean something for ``site`` ("gate" needs a channel gate)."""
    return ORDERINGS if site.channel_gate is not None else tuple(o for o in ORDERINGS if o != "gate")


def channel_order(site: SiteSummary, by: str) -> np.ndarray:
    """Channel indices in display order: by index; by channel gate, largest first; or by energy
    change, the channel whose energy weighting changed most (|log ratio|) first. Stable on ties."""
    if by == "index":
        return np.arange(site.channels)
    if by == "gate":
        if site.channel_gate is None:
            raise ValueError(f"site {site.name!r} ({site.kind}) has no channel gate to order by")
        return np.argsort(-site.channel_gate, kind="stable")
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
        channel_gates = np.stack([s.channel_gate for s in sites]) if first.channel_gate is not None else None
        statistics.append(
            SiteStatistics(
                name=first.name,
                kind=first.kind,
                images=len(sites),
                gate_values=gate_values,
                channel_gate_mean=None if channel_gates is None else channel_gates.mean(axis=0),
                channel_gate_std=None if channel_gates is None else channel_gates.std(axis=0),
                energy_ratio_mean=np.stack([s.energy_ratio for s in sites]).mean(axis=0),
            )
        )
    return statistics


def _percent(value) -> float | None:
    """Metrics are stored as fractions (0..1) or percents; the Models page shows percents."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) * 100.0 if 0.0 <= value <= 1.0 else float(value)


def model_card(loaded: Analysable, name: str) -> ModelCard:
    """Parameters, multiply-adds at the model's input size, and the recorded accuracies (fmw
    checkpoints only; a zoo model's weighting is the kinds of its sites)."""
    if isinstance(loaded, ZooModel):
        kinds = sorted({site.kind for site in find_sites(loaded.model)})
        weighting, input_size, metrics, channels = f"{loaded.family}: {', '.join(kinds) or 'none'}", loaded.input_size, {}, 3
    else:
        metadata = loaded.metadata
        weighting, input_size, metrics = metadata.weighting, metadata.input_size, metadata.metrics
        channels = metadata.architecture.in_channels
    return ModelCard(
        name=name,
        weighting=weighting,
        parameters=count_parameters(loaded.model),
        multiply_adds=count_multiply_adds(loaded.model, input_size, channels),
        input_size=input_size,
        top1=_percent(metrics.get("test_top1")),
        top1_weighting_off=_percent(metrics.get("test_top1_weighting_off")),
    )
