"""Models from elsewhere: torchvision classifiers, detectors and segmenters (by name, with their
published weights' class names and preprocessing), timm networks with SE, ECA, CBAM (optional), and
users' torchvision state dicts, each opened as a ``ModelHandle`` with its preprocessing and task."""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model, get_model_weights, list_models
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fmw.device import model_device
from fmw.errors import CheckpointError, ZooError
from fmw.models.handle import ModelHandle
from fmw.models.preprocessing import Preprocessing
from fmw.models.weights import compare_state_dicts, load_pickled_state_dict

TORCHVISION_MODELS: dict[str, str] = {
    "mobilenet_v3_small": "MobileNetV3-Small: 9 squeeze-excitation blocks (hard-sigmoid gates)",
    "mobilenet_v3_large": "MobileNetV3-Large: 8 squeeze-excitation blocks (hard-sigmoid gates)",
    "efficientnet_b0": "EfficientNet-B0: 16 squeeze-excitation blocks, one per MBConv block",
    "regnet_y_400mf": "RegNetY-400MF: 16 squeeze-excitation blocks, one per residual block",
}


@dataclass(frozen=True)
class TimmRecipe:
    """How to build one catalogued timm model: its timm name and ``create_model`` keyword arguments."""

    architecture: str
    options: dict
    description: str


TIMM_MODELS: dict[str, TimmRecipe] = {
    "seresnet18": TimmRecipe("seresnet18", {}, "SE-ResNet-18: squeeze-excitation (SEModule) in every block"),
    "resnet10t-ese": TimmRecipe(
        "resnet10t", {"block_args": {"attn_layer": "ese"}}, "ResNet-10-T with effective squeeze-excitation"
    ),
    "resnet10t-eca": TimmRecipe("resnet10t", {"block_args": {"attn_layer": "eca"}}, "ResNet-10-T with ECA"),
    "resnet10t-ceca": TimmRecipe(
        "resnet10t", {"block_args": {"attn_layer": "ceca"}}, "ResNet-10-T with circular-padding ECA"
    ),
    "resnet10t-cbam": TimmRecipe("resnet10t", {"block_args": {"attn_layer": "cbam"}}, "ResNet-10-T with CBAM"),
    "mobilenetv3_small_100": TimmRecipe(
        "mobilenetv3_small_100", {}, "timm's MobileNetV3-Small: EfficientNet-style squeeze-excitation"
    ),
}


@cache
def torchvision_models() -> dict[str, str]:
    """Every torchvision classification, detection and segmentation model by name, with its task
    (``torchvision.models.list_models`` of each family's module)."""
    import torchvision.models

    families = {
        "classification": torchvision.models,
        "detection": torchvision.models.detection,
        "segmentation": torchvision.models.segmentation,
    }
    return {name: task for task, module in families.items() for name in list_models(module=module)}


def torchvision_classifiers() -> tuple[str, ...]:
    """Every torchvision classification model."""
    return tuple(name for name, task in torchvision_models().items() if task == "classification")


def _torchvision_weights(name: str) -> WeightsEnum:
    if name not in torchvision_models():
        suggestions = ", ".join(get_close_matches(name, torchvision_models(), n=3)) or ", ".join(TORCHVISION_MODELS)
        raise ZooError(
            f"unknown torchvision model {name!r}; did you mean: {suggestions}? (every classification, detection "
            "and segmentation model of torchvision.models.list_models() works, e.g. mobilenet_v3_small, "
            "fasterrcnn_mobilenet_v3_large_320_fpn, lraspp_mobilenet_v3_large)"
        )
    weights: WeightsEnum = get_model_weights(name).DEFAULT
    return weights


def detector_transform(model: nn.Module) -> GeneralizedRCNNTransform | None:
    """The transform a torchvision-style detector resizes, normalises and pads its images with."""
    transform = getattr(model, "transform", None)
    return transform if isinstance(transform, GeneralizedRCNNTransform) else None


def resize_detector(model: nn.Module, size: int) -> None:
    """Make ``model``'s own transform resize the short side of every image to ``size`` pixels (its
    longest side capped in the proportion the detector was built with), or to ``size`` x ``size``
    for a fixed-size one (SSD)."""
    transform = detector_transform(model)
    if transform is None:
        return
    if transform.fixed_size is not None:
        transform.fixed_size = (size, size)
    transform.max_size = max(size, round(size * transform.max_size / transform.min_size[-1]))
    transform.min_size = (size,)


@dataclass
class SeenImage:
    """What a detector saw of one image: ``pixels`` (H, W, 3 uint8), the image after its own
    transform resized it and padded it to the batch's size (what its feature maps cover, padding
    black); ``size`` (h, w), the resized image inside the padding; ``scale`` (h / the original
    height, w / the original width), which maps boxes in the original image onto ``pixels``."""

    pixels: np.ndarray
    size: tuple[int, int]
    scale: tuple[float, float]


def seen_images(model: nn.Module, images: list[torch.Tensor]) -> list[SeenImage] | None:
    """The images (3, H, W, 0..1) as ``model``'s own detector transform resizes and pads them for
    one pass (``GeneralizedRCNNTransform``: torchvision's Faster R-CNN, RetinaNet, FCOS, SSD); None
    for a model without one."""
    transform = detector_transform(model)
    if transform is None:
        return None
    with torch.no_grad():
        batch, _ = transform.eval()([image.to(model_device(model)) for image in images])
    mean = torch.tensor(transform.image_mean, device=batch.tensors.device).view(1, -1, 1, 1)
    std = torch.tensor(transform.image_std, device=batch.tensors.device).view(1, -1, 1, 1)
    pixels = ((batch.tensors * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    seen = []
    for index, (height, width) in enumerate(batch.image_sizes):
        padded = pixels[index].numpy().copy()
        padded[height:] = 0
        padded[:, width:] = 0
        original = images[index].shape[-2:]
        seen.append(SeenImage(padded, (height, width), (height / original[0], width / original[1])))
    return seen


def _detector_preprocessing(model: nn.Module) -> Preprocessing:
    transform = detector_transform(model)
    size = transform.min_size[-1] if transform is not None else 800
    return Preprocessing(size, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear", whole_image=True)


def _torchvision_preprocessing(weights: WeightsEnum, task: str, model: nn.Module) -> Preprocessing:
    """Classifiers: the weights' resize, crop, mean and std. Segmenters: their resize, then a centre
    square of that size (torchvision does not crop; fmw does, so that masks, maps and overlays lie
    over one picture). Detectors: the whole image, resized and normalised by the model itself."""
    if task == "detection":
        return _detector_preprocessing(model)
    preset = weights.transforms()
    resize = preset.resize_size[0]
    return Preprocessing(
        resize_size=resize,
        crop_size=resize if task == "segmentation" else preset.crop_size[0],
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
    )


def _build_torchvision(name: str, aux_loss: bool = False) -> nn.Module:
    """The architecture ``name`` with no weights of any kind (backbone weights included)."""
    if torchvision_models()[name] == "classification":
        return get_model(name, weights=None)
    options: dict[str, Any] = {"aux_loss": True} if aux_loss else {}
    return get_model(name, weights=None, weights_backbone=None, **options)


def _published_on(weights: WeightsEnum) -> str:
    """What the weights were trained on, in words."""
    name = str(weights.name)
    if name.startswith("IMAGENET"):
        return "ImageNet"
    if name.startswith("COCO"):
        return "COCO (VOC classes)" if "VOC" in name else "COCO"
    return f"published ({name})"


def _load_published(model_name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The architecture built to hold ``state`` (with its auxiliary head when the state has one),
    loaded with it. Published detectors freeze their batch norms (torchvision's FrozenBatchNorm2d,
    the same maths in eval mode), so their files lack ``num_batches_tracked``: that alone may be
    missing."""
    model = _build_torchvision(model_name, aux_loss=any(key.startswith("aux_classifier.") for key in state))
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ZooError(
            f"the published weights of {model_name} do not fit torchvision's architecture (missing: "
            f"{', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(result.unexpected_keys[:5]) or 'none'}). "
            "Delete the cached file so it can be fetched again, or use --random-weights."
        )
    return model


def _seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model whose random initialisation depends only on ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def cached_weights_path(name: str) -> Path:
    """Where torch's hub cache keeps (or would keep) the default published weights of ``name``."""
    filename = os.path.basename(urlparse(_torchvision_weights(name).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _published_state_dict(
    name: str, weights: WeightsEnum, allow_download: bool, progress: bool = False
) -> dict[str, torch.Tensor]:
    """The cached published weights (downloading them first when allowed), read with weights_only=True.

    torchvision's builders load with ``torch.load(weights_only=False)``; fmw passes ``weights_only=True``
    to the same ``weights.get_state_dict`` so the cached file can only yield tensors."""
    path = cached_weights_path(name)
    what = f"{_published_on(weights)} weights for {name}"
    advice = (
        "Choose 'random weights' (on the command line: --random-weights) to explore the architecture, "
        "or copy the file there."
    )
    cached = path.is_file()
    if not cached and not allow_download:
        raise ZooError(f"{what} are not in the torch cache ({path}) and downloading was not allowed. {advice}")
    try:
        state: dict[str, torch.Tensor] = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        return state
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if cached:
            raise ZooError(
                f"{what} in the torch cache ({path}) could not be read: {reason}. "
                "Delete the file so it can be fetched again, or choose 'random weights'."
            ) from None
        raise ZooError(
            f"{what} are not in the torch cache ({path}) and could not be downloaded: {reason}. {advice}"
        ) from None


def load_torchvision_model(
    name: str,
    weights: Literal["default", "random"] = "default",
    device: str | torch.device = "cpu",
    *,
    allow_download: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> ModelHandle:
    """Open a torchvision classification, detection or segmentation model in eval mode on ``device``,
    its task set by its family.

    ``weights="default"`` loads torchvision's default published weights (ImageNet; COCO for
    detectors; COCO with VOC's classes for segmenters) from the torch hub cache
    (``cached_weights_path``), downloading them only when ``allow_download``; otherwise a ``ZooError``
    says where the file should be. ``weights="random"`` builds the architecture with a seeded
    random initialisation (``random_weights=True``) and downloads nothing, backbone weights
    included. Class names come from the default weights' metadata either way (read without a
    download): ImageNet's, COCO's 91 (with torchvision's '__background__' and 'N/A'), VOC's 21.
    """
    tv_weights = _torchvision_weights(name)
    if weights not in ("default", "random"):
        raise ZooError(f"weights must be 'default' (published) or 'random', got {weights!r}")
    task = torchvision_models()[name]
    if weights == "default":
        state = _published_state_dict(name, tv_weights, allow_download, progress)
        model = _load_published(name, state)
        source = f"torchvision {tv_weights} ({cached_weights_path(name)})"
    else:
        model = _seeded_model(lambda: _build_torchvision(name), seed)
        source = f"torchvision {name}, random initialisation (seed {seed})"
    return ModelHandle(
        model=model.to(device).eval(),
        name=name,
        family="torchvision",
        class_names=list(tv_weights.meta["categories"]),
        preprocessing=_torchvision_preprocessing(tv_weights, task, model),
        random_weights=weights == "random",
        source=source,
        task=task,
    )


def load_state_dict_upload(
    data: bytes, architecture: str, filename: str = "uploaded state dict", device: str | torch.device = "cpu"
) -> ModelHandle:
    """A user's ``torch.save(model.state_dict())`` file for the catalogued torchvision ``architecture``.

    The bytes are read with ``torch.load(weights_only=True)``, so nothing in them is executed; a file
    whose keys or shapes do not fit raises ``CheckpointError`` listing the mismatching keys."""
    tv_weights = _torchvision_weights(architecture)
    found = load_pickled_state_dict(data, filename)
    model = _build_torchvision(architecture)
    expected = model.state_dict()
    problems = compare_state_dicts(expected, found)
    if problems:
        raise CheckpointError(
            f"{filename}: this state dict does not fit torchvision's {architecture}: "
            + " | ".join(problems)
            + ". Choose the architecture the file was saved from."
        )
    model.load_state_dict({key: tensor.to(expected[key].dtype) for key, tensor in found.items()})
    return ModelHandle(
        model=model.to(device).eval(),
        name=f"{architecture} ({filename})",
        family="torchvision",
        class_names=list(tv_weights.meta["categories"]),
        preprocessing=_torchvision_preprocessing(tv_weights, torchvision_models()[architecture], model),
        random_weights=False,
        source=f"uploaded state dict {filename} for torchvision {architecture}",
        task=torchvision_models()[architecture],
    )


def timm_available() -> bool:
    """Whether timm is installed (its models and weighting modules are optional); looked up without
    importing it, which takes about a second."""
    return importlib.util.find_spec("timm") is not None


def build_timm_model(
    name: str, device: str | torch.device = "cpu", *, seed: int = 0, pretrained: bool = False
) -> ModelHandle:
    """A timm model: a catalogued one (``TIMM_MODELS``) or any name ``timm.list_models()`` knows,
    with seeded random weights, or with ``pretrained`` its published weights (fetched by timm from
    the Hugging Face hub, with its progress bar; offline, a ``ZooError`` says what to do)."""
    if not timm_available():
        raise ZooError(f"timm is not installed, so {name!r} cannot be built; run: pip install 'timm>=1.0,<2'")
    import timm
    from timm.data import ImageNetInfo, resolve_data_config

    if name in TIMM_MODELS:
        recipe = TIMM_MODELS[name]
    elif timm.is_model(name):
        recipe = TimmRecipe(name, {}, f"timm {name}")
    else:
        suggestions = ", ".join(get_close_matches(name, timm.list_models(), n=3)) or ", ".join(TIMM_MODELS)
        raise ZooError(f"unknown timm model {name!r}; did you mean: {suggestions}? (timm.list_models() lists them)")

    def build() -> nn.Module:
        model: nn.Module = timm.create_model(recipe.architecture, pretrained=pretrained, **recipe.options)
        return model

    try:
        model = _seeded_model(build, seed)
    except (OSError, RuntimeError, ValueError) as error:  # hub unreachable, missing weights file
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ZooError(
            f"timm could not fetch the pretrained weights of {name!r} ({reason}). Connect to the internet "
            "(timm downloads them from the Hugging Face hub into its cache), or use random weights "
            "(--random-weights) to explore the architecture."
        ) from None
    config = resolve_data_config({}, model=model)
    crop_size = config["input_size"][-1]
    classes = getattr(model, "num_classes", 1000)
    names = [description.split(",")[0] for description in ImageNetInfo().label_descriptions()]
    weights = "pretrained weights" if pretrained else f"random initialisation (seed {seed})"
    return ModelHandle(
        model=model.to(device).eval(),
        name=name,
        family="timm",
        class_names=names if classes == len(names) else [f"class {index}" for index in range(classes)],
        preprocessing=Preprocessing(
            resize_size=math.floor(crop_size / config["crop_pct"]),
            crop_size=crop_size,
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            interpolation=config["interpolation"],
        ),
        random_weights=not pretrained,
        source=f"timm {recipe.architecture}{f' {recipe.options}' if recipe.options else ''}, {weights}",
    )
