"""Users' own models: a factory named by ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``
(a function or class returning an ``nn.Module``, or a module object itself), its optional weights
(``.safetensors``, or a ``torch.save`` state dict read with ``weights_only=True``), preprocessing and
class names. Importing the file runs its code: only ever do it for a path the user typed on the
command line or in a notebook, never for anything that came through the dashboard.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from fmw.errors import CheckpointError, FMWError
from fmw.models.handle import ModelHandle
from fmw.models.preprocessing import Preprocessing
from fmw.models.tasks import check_task, postprocessed, segmentation_logits
from fmw.models.weights import compare_state_dicts, load_pickled_state_dict, read_safetensors
from fmw.models.zoo import _detector_preprocessing, _seeded_model, detector_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "UserModelOptions",
    "is_factory_spec",
    "load_postprocess",
    "load_user_model",
    "wrap_module",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class UserModelOptions:
    """How to open a user's model. Defaults: its own initialisation (seeded), 224-px inputs,
    ImageNet's mean and std, classes named "class 0", "class 1", ... after the model's outputs, the
    task inferred from its output; ``postprocess`` names ``FILE.py:FUNCTION`` turning a raw output
    into detection's boxes."""

    weights: Path | None = None
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] | None = None
    seed: int = 0
    task: str | None = None
    postprocess: str | None = None


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` reads as ``file.py:FACTORY`` or ``package.module:FACTORY``."""
    target, colon, factory = spec.rpartition(":")
    return bool(colon and target and factory.isidentifier() and not target.startswith(("torchvision", "timm")))


def _import_target(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise FMWError(f"{target}: no such file; give the path of a Python file and a factory in it (FILE.py:NAME)")
        name = f"fmw_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FMWError(f"{target}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise FMWError(f"{target}: importing it raised {type(error).__name__}: {error}") from None
        return module
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise FMWError(
            f"cannot import module {target!r} ({error}); give FILE.py:FACTORY for a file, or a module "
            "importable from here (installed, or in the current directory)"
        ) from None
    except Exception as error:
        raise FMWError(f"importing {target!r} raised {type(error).__name__}: {error}") from None


def _attribute(spec: str) -> tuple[str, object]:
    target, _, name = spec.rpartition(":")
    module = _import_target(target)
    found = getattr(module, name, None)
    if found is None:
        callables = sorted(key for key, value in vars(module).items() if callable(value) and not key.startswith("_"))
        raise FMWError(f"{target} has no {name!r}; callables found there: {', '.join(callables[:12]) or 'none'}")
    return name, found


def load_postprocess(spec: str) -> Callable[[Any], Any]:
    """The function ``FILE.py:FUNCTION`` (or ``package.module:FUNCTION``) names; it runs the user's file."""
    if not is_factory_spec(spec):
        raise FMWError(f"--postprocess {spec!r}: give FILE.py:FUNCTION or package.module:FUNCTION")
    name, function = _attribute(spec)
    if not callable(function):
        raise FMWError(f"--postprocess {spec}: {name} is a {type(function).__name__}, not a function")
    return function


def _build(spec: str, seed: int) -> nn.Module:
    factory_name, factory = _attribute(spec)
    if isinstance(factory, nn.Module):
        return factory
    if not callable(factory):
        raise FMWError(f"{spec}: {factory_name} is a {type(factory).__name__}, not a function, class or nn.Module")
    try:
        built = _seeded_model(factory, seed)
    except Exception as error:
        raise FMWError(f"{spec}: calling {factory_name}() raised {type(error).__name__}: {error}") from None
    if not isinstance(built, nn.Module):
        raise FMWError(f"{spec}: {factory_name}() returned a {type(built).__name__}, not an nn.Module")
    return built


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        return read_safetensors(data, str(path))[0]
    return load_pickled_state_dict(data, str(path))


def _load_weights(model: nn.Module, path: Path, spec: str) -> None:
    found = _read_weights(path)
    expected = model.state_dict()
    if found and all(key.startswith("module.") for key in found) and not any(k.startswith("module.") for k in expected):
        found = {key.removeprefix("module."): tensor for key, tensor in found.items()}  # saved from DataParallel
    problems = compare_state_dicts(expected, found)
    if problems:
        raise CheckpointError(f"{path}: these weights do not fit {spec}: " + " | ".join(problems))
    model.load_state_dict({key: tensor.to(expected[key].dtype) for key, tensor in found.items()})


def wrap_module(
    module: nn.Module,
    name: str,
    source: str,
    options: UserModelOptions = UserModelOptions(),
    device: str | torch.device = "cpu",
    *,
    random_weights: bool = False,
) -> ModelHandle:
    """Any model ``module`` (a classifier, segmenter, detector or anything else) ready to analyse, in
    eval mode on ``device``: preprocessing from ``options``; by one forward pass, its task (inferred
    from the output, after ``options.postprocess``, or ``options.task`` checked against it) and class
    names from ``options`` or "class 0", "class 1", ... after the classes it scores. A detector with
    torchvision's own transform (``GeneralizedRCNNTransform``: it resizes and normalises inside)
    is given whole images as 0..1 pixels; ``options.input_size`` then only sizes the check pass."""
    module = module.to(device).eval()
    size = options.input_size
    try:
        with torch.no_grad():
            outputs = module(torch.zeros(1, len(options.mean), size, size, device=device))
    except Exception as error:
        raise FMWError(
            f"{name}: the model does not run on a {len(options.mean)}x{size}x{size} input "
            f"({type(error).__name__}: {str(error).strip()[:200]}); give the input size it takes "
            "(--input-size, or input_size=...) and, for another channel count, its mean and std"
        ) from None
    postprocess = None if options.postprocess is None else load_postprocess(options.postprocess)
    outputs = postprocessed(postprocess, outputs, f"--postprocess {options.postprocess}")
    task = check_task(options.task, outputs, name)
    scores = outputs if task == "classification" else segmentation_logits(outputs)
    if options.class_names is not None:
        class_names = list(options.class_names)
    elif task in ("classification", "segmentation") and scores is not None:
        class_names = [f"class {index}" for index in range(scores.shape[1])]
    else:
        class_names = []
    return ModelHandle(
        model=module,
        name=name,
        family="user",
        class_names=class_names,
        preprocessing=_detector_preprocessing(module)
        if detector_transform(module) is not None
        else Preprocessing(
            resize_size=size, crop_size=size, mean=options.mean, std=options.std, interpolation="bilinear"
        ),
        random_weights=random_weights,
        source=source,
        task=task,
        postprocess=postprocess,
    )


def load_user_model(
    spec: str, options: UserModelOptions = UserModelOptions(), device: str | torch.device = "cpu"
) -> ModelHandle:
    """The model ``spec`` names, in eval mode on ``device``, with its weights, preprocessing and
    classes; every failure (missing file or factory, a factory that raises or returns something
    else, weights that do not fit) is an ``FMWError`` saying what was wrong."""
    if not is_factory_spec(spec):
        raise FMWError(f"{spec!r} is not FILE.py:FACTORY or package.module:FACTORY")
    model = _build(spec, options.seed)
    if options.weights is not None:
        _load_weights(model, options.weights, spec)
    weights = f"weights {options.weights}" if options.weights is not None else "its own initialisation"
    source = f"{spec}, {weights} (seed {options.seed})" if options.weights is None else f"{spec}, {weights}"
    return wrap_module(model, spec.rpartition(":")[2], source, options, device, random_weights=options.weights is None)
