"""One way to name a model everywhere (commands, notebooks, the dashboard): a model SPEC, the options
that go with it, and the one registry of model families that opens it.

- ``path/to/model.safetensors``: an fmw checkpoint; a bare name (``cbam``) for a shipped one;
- ``torchvision:NAME``: any torchvision classification, detection or segmentation model, its
  published weights (ImageNet, COCO, COCO with VOC's classes) fetched the way torchvision fetches
  them (``random_weights`` for a seeded random initialisation, with no download of any kind);
- ``timm:NAME``: any timm model, pretrained weights fetched by timm (or random);
- ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``: the user's own code, where FACTORY is a
  function or class returning an ``nn.Module`` (or a module object); ``weights`` a ``.safetensors``
  or ``.pt``/``.pth`` state dict, read without unpickling code.

``FAMILIES`` holds one ``ModelFamily`` per form, in the order they are tried; ``load_model`` opens a
SPEC with the first family that claims it. The command line's options for these live in
``fmw.cli.options``, the dashboard's model list (``fmw-models.toml``) in ``fmw.cli.model_config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fmw.errors import FMWError
from fmw.io.checkpoint import checkpoint_by_name, load_checkpoint
from fmw.models.handle import ModelHandle
from fmw.models.user import IMAGENET_MEAN, IMAGENET_STD, UserModelOptions, is_factory_spec, load_user_model
from fmw.models.zoo import build_timm_model, load_state_dict_upload, load_torchvision_model, resize_detector

__all__ = [
    "FAMILIES",
    "SPEC_FORMS",
    "ModelFamily",
    "ModelOptions",
    "family_of",
    "load_model",
    "read_classes",
    "spec_name",
]

SPEC_FORMS = "path/to/model.safetensors, torchvision:NAME, timm:NAME, path/to/file.py:FACTORY or package.module:FACTORY"


@dataclass(frozen=True)
class ModelOptions:
    """Options for ``load_model``. ``weights``: a state dict for a factory (or a torchvision
    architecture); ``random_weights``: a seeded random initialisation instead of published weights;
    ``input_size``, ``mean``, ``std``: preprocessing (defaults: the weights' own, else 224 px and
    ImageNet's statistics); ``classes``: a file with one class name a line; ``task``: what the output
    means (default: inferred from it; ``fmw.models.tasks.TASKS``); ``postprocess``: ``FILE.py:FUNCTION``
    turning a factory model's raw output into detection's boxes."""

    weights: Path | None = None
    random_weights: bool = False
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: Path | None = None
    seed: int = 0
    device: str | torch.device = "cpu"
    allow_download: bool = True
    task: str | None = None
    postprocess: str | None = None


def read_classes(path: Path) -> tuple[str, ...]:
    """One class name a line; blank lines are skipped."""
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as error:
        raise FMWError(f"{path}: cannot read the class names ({error})") from None
    if not names:
        raise FMWError(f"{path}: no class names in it (expected one name a line)")
    return names


def _adjusted(model: ModelHandle, options: ModelOptions) -> ModelHandle:
    """A zoo model with the preprocessing and class names the options override."""
    preprocessing = model.preprocessing
    if options.input_size is not None:
        preprocessing = dataclasses.replace(preprocessing, resize_size=options.input_size, crop_size=options.input_size)
        resize_detector(model.model, options.input_size)
    if options.mean is not None or options.std is not None:
        preprocessing = dataclasses.replace(
            preprocessing, mean=options.mean or preprocessing.mean, std=options.std or preprocessing.std
        )
    names = list(read_classes(options.classes)) if options.classes is not None else model.class_names
    if options.postprocess is not None:
        raise FMWError(f"--postprocess applies to FILE.py:FACTORY models; {model.name} returns {model.task} outputs")
    if options.task not in (None, model.task, "other"):
        raise FMWError(
            f"{model.name} is a {model.task} model, so --task {options.task} contradicts its output; "
            f"leave --task out (or give --task other to show its output as it is)"
        )
    task = options.task or model.task
    return dataclasses.replace(model, preprocessing=preprocessing, class_names=names, task=task)


def _checkpoint_path(spec: str) -> Path | None:
    """The fmw checkpoint ``spec`` names: a shipped or checkpoint-folder one by bare name (``cbam``), or a
    ``.safetensors`` path; None when it names no checkpoint."""
    named = checkpoint_by_name(spec) if ":" not in spec else None
    if named is not None:
        return named
    return Path(spec) if spec.endswith(".safetensors") and not is_factory_spec(spec) else None


def _open_checkpoint(spec: str, options: ModelOptions) -> ModelHandle:
    if options.weights is not None:
        raise FMWError(f"{spec} is an fmw checkpoint: it holds its weights, so --weights does not apply")
    path = _checkpoint_path(spec)
    return load_checkpoint(path if path is not None else Path(spec), options.device).handle()


def _zoo_name(spec: str) -> str:
    family, _, name = spec.partition(":")
    if not name:
        raise FMWError(f"{spec!r}: give the model's name after '{family}:', e.g. {family}:mobilenet_v3_small")
    return name


def _open_torchvision(spec: str, options: ModelOptions) -> ModelHandle:
    name = _zoo_name(spec)
    if options.weights is not None:
        data = options.weights.read_bytes() if options.weights.is_file() else b""
        if not data:
            raise FMWError(f"{options.weights}: no such weights file (or it is empty)")
        return _adjusted(load_state_dict_upload(data, name, str(options.weights), options.device), options)
    model = load_torchvision_model(
        name,
        "random" if options.random_weights else "default",
        options.device,
        allow_download=options.allow_download,
        seed=options.seed,
        progress=True,
    )
    return _adjusted(model, options)


def _open_timm(spec: str, options: ModelOptions) -> ModelHandle:
    name = _zoo_name(spec)
    if options.weights is not None:
        raise FMWError("--weights applies to torchvision:NAME and FILE.py:FACTORY models, not timm's")
    model = build_timm_model(name, options.device, seed=options.seed, pretrained=not options.random_weights)
    return _adjusted(model, options)


def _open_factory(spec: str, options: ModelOptions) -> ModelHandle:
    user = UserModelOptions(
        weights=options.weights,
        input_size=options.input_size or 224,
        mean=options.mean or IMAGENET_MEAN,
        std=options.std or IMAGENET_STD,
        class_names=read_classes(options.classes) if options.classes is not None else None,
        seed=options.seed,
        task=options.task,
        postprocess=options.postprocess,
    )
    return load_user_model(spec, user, options.device)


def _after_colon(spec: str) -> str:
    return spec.rpartition(":")[2] or spec


@dataclass(frozen=True)
class ModelFamily:
    """One form of SPEC: ``form`` as help texts spell it, ``claims`` whether a SPEC has this form,
    ``open`` the model it names with the options given, ``display_name`` a short name for display."""

    name: str
    form: str
    claims: Callable[[str], bool]
    open: Callable[[str, ModelOptions], ModelHandle]
    display_name: Callable[[str], str]


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "fmw",
        "path/to/model.safetensors (or a shipped checkpoint's name)",
        lambda spec: _checkpoint_path(spec) is not None,
        _open_checkpoint,
        lambda spec: Path(spec).stem,
    ),
    ModelFamily(
        "torchvision", "torchvision:NAME", lambda spec: spec.startswith("torchvision:"), _open_torchvision, _after_colon
    ),
    ModelFamily("timm", "timm:NAME", lambda spec: spec.startswith("timm:"), _open_timm, _after_colon),
    ModelFamily(
        "factory", "path/to/file.py:FACTORY or package.module:FACTORY", is_factory_spec, _open_factory, _after_colon
    ),
)


def family_of(spec: str) -> ModelFamily:
    """The family that opens ``spec`` (the first in ``FAMILIES`` that claims it); an ``FMWError``
    listing the forms when none does."""
    spec = spec.strip()
    for family in FAMILIES:
        if family.claims(spec):
            return family
    raise FMWError(f"{spec!r} is not a model spec fmw knows; give one of: {SPEC_FORMS}")


def spec_name(spec: str) -> str:
    """A short name for display: a checkpoint's stem, a zoo model's or a factory's name."""
    try:
        return family_of(spec).display_name(spec.strip())
    except FMWError:
        return spec


def load_model(spec: str, options: ModelOptions = ModelOptions()) -> ModelHandle:
    """The model ``spec`` names, in eval mode on ``options.device``, as one ``ModelHandle`` whatever
    its family.

    Args:
        spec: a model SPEC (the module's docstring lists the forms): an fmw checkpoint's path or a
            shipped one's name, ``torchvision:NAME``, ``timm:NAME``, ``FILE.py:FACTORY`` or
            ``package.module:FACTORY``.
        options: weights, random weights, preprocessing, class names, task, device (``ModelOptions``).

    Returns:
        A ``ModelHandle``: the module, its ``name``, ``family``, ``task``, ``class_names`` and
        ``preprocessing`` (how an image becomes its input).

    Raises:
        FMWError: every failure (``CheckpointError``, ``ZooError``, ...), saying what to do.

    Examples:
        >>> from fmw import load_model
        >>> from fmw.io.model_spec import ModelOptions
        >>> handle = load_model("torchvision:mobilenet_v3_small", ModelOptions(random_weights=True))
        >>> handle.family, handle.task, handle.preprocessing.crop_size, len(handle.class_names)
        ('torchvision', 'classification', 224, 1000)
        >>> load_model("cbam").family  # a shipped checkpoint
        'fmw'
    """
    spec = spec.strip()
    return family_of(spec).open(spec, options)
