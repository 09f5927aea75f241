"""One way to name a model everywhere (commands, notebooks, the dashboard's command line): a model
SPEC, and the options that go with it.

- ``path/to/model.safetensors``: an fmw checkpoint; a bare name (``cbam``) for a shipped one;
- ``torchvision:NAME``: any torchvision classification, detection or segmentation model, its
  published weights (ImageNet, COCO, COCO with VOC's classes) fetched the way torchvision fetches
  them (``--random-weights`` for a seeded random initialisation, with no download of any kind);
- ``timm:NAME``: any timm model, pretrained weights fetched by timm (or random);
- ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``: the user's own code, where FACTORY is a
  function or class returning an ``nn.Module`` (or a module object); ``--weights`` a ``.safetensors``
  or ``.pt``/``.pth`` state dict, read without unpickling code.

``add_model_arguments`` declares the options on a command's parser, so that every command spells
them the same way; ``model_options_from_args`` turns the parsed options into ``ModelOptions``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmw.errors import FMWError
from fmw.io.checkpoint import checkpoint_by_name, load_checkpoint
from fmw.models.handle import ModelHandle
from fmw.models.tasks import TASKS
from fmw.models.user import IMAGENET_MEAN, IMAGENET_STD, UserModelOptions, is_factory_spec, load_user_model
from fmw.models.zoo import build_timm_model, load_state_dict_upload, load_torchvision_model, resize_detector

__all__ = [
    "CONFIG_FILE",
    "MODELS_VARIABLE",
    "SPEC_FORMS",
    "ModelEntry",
    "ModelOptions",
    "add_model_arguments",
    "configured_models",
    "entries_from_json",
    "entries_to_json",
    "load_model",
    "model_options_from_args",
    "read_classes",
    "read_model_config",
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


def spec_name(spec: str) -> str:
    """A short name for display: a checkpoint's stem, a zoo model's or a factory's name."""
    if spec.endswith(".safetensors"):
        return Path(spec).stem
    return spec.rpartition(":")[2] or spec


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


def load_model(spec: str, options: ModelOptions = ModelOptions()) -> ModelHandle:
    """The model ``spec`` names (see the module's docstring), in eval mode on ``options.device``, as
    one ``ModelHandle`` whatever its family. Every failure is an ``FMWError`` (``CheckpointError``,
    ``ZooError``, ...) saying what to do."""
    spec = spec.strip()
    named = checkpoint_by_name(spec) if ":" not in spec else None  # a shipped checkpoint by name, e.g. "cbam"
    if named is not None or (spec.endswith(".safetensors") and not is_factory_spec(spec)):
        if options.weights is not None:
            raise FMWError(f"{spec} is an fmw checkpoint: it holds its weights, so --weights does not apply")
        return load_checkpoint(named or Path(spec), options.device).handle()
    family, colon, name = spec.partition(":")
    if colon and family in ("torchvision", "timm"):
        if not name:
            raise FMWError(f"{spec!r}: give the model's name after '{family}:', e.g. {family}:mobilenet_v3_small")
        if family == "timm":
            if options.weights is not None:
                raise FMWError("--weights applies to torchvision:NAME and FILE.py:FACTORY models, not timm's")
            model = build_timm_model(name, options.device, seed=options.seed, pretrained=not options.random_weights)
        elif options.weights is not None:
            data = options.weights.read_bytes() if options.weights.is_file() else b""
            if not data:
                raise FMWError(f"{options.weights}: no such weights file (or it is empty)")
            model = load_state_dict_upload(data, name, str(options.weights), options.device)
        else:
            model = load_torchvision_model(
                name,
                "random" if options.random_weights else "default",
                options.device,
                allow_download=options.allow_download,
                seed=options.seed,
                progress=True,
            )
        return _adjusted(model, options)
    if is_factory_spec(spec):
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
    raise FMWError(f"{spec!r} is not a model spec fmw knows; give one of: {SPEC_FORMS}")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 0.485,0.456,0.406, got {text!r}") from None


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--model SPEC`` (repeatable) and the options that shape how each model is opened."""
    group = parser.add_argument_group("models", f"SPEC is one of: {SPEC_FORMS}")
    group.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="SPEC",
        required=required,
        help="a model to work on (repeat for several)",
    )
    group.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="a .safetensors, .pt or .pth state dict for FILE.py:FACTORY (or torchvision:NAME) "
        "models, read without running code (default: the model's own initialisation)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="torchvision/timm: seeded random weights instead of downloading published ones (torchvision's "
        "detectors and segmenters: their backbones' too)",
    )
    group.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="PX",
        help="input side in pixels (default: the weights' own; 224 for FILE.py:FACTORY models); for a "
        "detector, the short side its own transform resizes every image to",
    )
    group.add_argument(
        "--mean",
        type=_floats,
        default=None,
        help="normalisation mean per channel (default: the "
        "weights' own; ImageNet's 0.485,0.456,0.406 for FILE.py:FACTORY models)",
    )
    group.add_argument("--std", type=_floats, default=None, help="normalisation std per channel (default: as --mean)")
    group.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="a file with one class name a line (default: the weights' own; 'class 0', 'class 1', ...)",
    )
    group.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help="what the model's output means (default: inferred from it: logits (N, classes) -> classification, "
        "(N, classes, H, W) or {'out': ...} -> segmentation, a list of {boxes, labels, scores} -> detection)",
    )
    group.add_argument(
        "--postprocess",
        default=None,
        metavar="FILE.py:FUNCTION",
        help="for FILE.py:FACTORY models: a function turning the raw output (a YOLO head's maps) into a list of "
        "{boxes, labels, scores} per image (default: none; such a model is shown as 'other')",
    )


def model_options_from_args(args: argparse.Namespace, device: str | torch.device = "cpu") -> ModelOptions:
    return ModelOptions(
        weights=args.weights,
        random_weights=args.random_weights,
        input_size=args.input_size,
        mean=args.mean,
        std=args.std,
        classes=args.classes,
        device=device,
        task=args.task,
        postprocess=args.postprocess,
    )


MODELS_VARIABLE = "FMW_MODELS"
CONFIG_FILE = "fmw-models.toml"
_ENTRY_KEYS = {"spec", "weights", "random_weights", "input_size", "mean", "std", "classes", "task", "postprocess"}


@dataclass(frozen=True)
class ModelEntry:
    """A model the user asked the dashboard to open: its SPEC and options (no device: the
    dashboard's device box decides)."""

    spec: str
    options: ModelOptions

    @property
    def label(self) -> str:
        return self.spec


def _text(raw: Mapping[str, Any], key: str, source: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FMWError(
            f'{source}: {key} must be a string, e.g. {key} = "{"detection" if key == "task" else "yolo.py:decode"}"'
        )
    if key == "task" and value is not None and value not in TASKS:
        raise FMWError(f"{source}: unknown task {value!r}; give one of: {', '.join(TASKS)}")
    return value


def _entry(raw: Mapping[str, Any], source: str) -> ModelEntry:
    unknown = set(raw) - _ENTRY_KEYS
    if "spec" not in raw or not isinstance(raw["spec"], str) or unknown:
        raise FMWError(
            f'{source}: each model needs a spec = "SPEC" and may have {", ".join(sorted(_ENTRY_KEYS - {"spec"}))}'
            + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else "")
        )

    def path(key: str) -> Path | None:
        value = raw.get(key)
        return None if value is None else Path(str(value)).expanduser()

    def numbers(key: str) -> tuple[float, ...] | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
            raise FMWError(f"{source}: {key} must be a list of numbers, e.g. [0.485, 0.456, 0.406]")
        return tuple(float(v) for v in value)

    size = raw.get("input_size")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise FMWError(f"{source}: input_size must be a positive integer, got {size!r}")
    options = ModelOptions(
        weights=path("weights"),
        random_weights=bool(raw.get("random_weights", False)),
        input_size=size,
        mean=numbers("mean"),
        std=numbers("std"),
        classes=path("classes"),
        task=_text(raw, "task", source),
        postprocess=_text(raw, "postprocess", source),
    )
    return ModelEntry(raw["spec"], options)


def _raw(entry: ModelEntry) -> dict[str, Any]:
    options = entry.options
    raw: dict[str, Any] = {"spec": entry.spec, "random_weights": options.random_weights}
    for key in ("weights", "classes", "task", "postprocess"):
        value = getattr(options, key)
        if value is not None:
            raw[key] = str(value)
    for key in ("input_size", "mean", "std"):
        value = getattr(options, key)
        if value is not None:
            raw[key] = list(value) if isinstance(value, tuple) else value
    return raw


def entries_to_json(entries: list[ModelEntry]) -> str:
    return json.dumps([_raw(entry) for entry in entries])


def entries_from_json(text: str, source: str = MODELS_VARIABLE) -> list[ModelEntry]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise FMWError(f"{source}: not valid JSON ({error})") from None
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise FMWError(f"{source}: expected a JSON list of models")
    return [_entry(item, source) for item in raw]


def _beside(spec: str, base: Path) -> str:
    """``spec`` with a relative ``FILE.py`` or ``.safetensors`` path taken from ``base``."""
    target, colon, factory = spec.rpartition(":")
    if colon and target.endswith(".py") and not Path(target).is_absolute():
        return f"{base / target}:{factory}"
    if spec.endswith(".safetensors") and not Path(spec).is_absolute():
        return str(base / spec)
    return spec


def read_model_config(path: Path) -> list[ModelEntry]:
    """The ``[[model]]`` tables of a TOML file (README: "Your models in the dashboard"); relative
    paths in it are taken from the file's folder."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise FMWError(f"{path}: cannot read it as TOML ({error})") from None
    tables = data.get("model", [])
    if not isinstance(tables, list) or set(data) - {"model"}:
        raise FMWError(f'{path}: expected only [[model]] tables, each with spec = "SPEC"')
    entries = []
    for table in tables:
        entry = _entry(table, str(path))
        base = path.parent
        options = dataclasses.replace(
            entry.options,
            weights=None if entry.options.weights is None else base / entry.options.weights,
            classes=None if entry.options.classes is None else base / entry.options.classes,
        )
        spec = _beside(entry.spec, base)
        if options.postprocess is not None:
            options = dataclasses.replace(options, postprocess=_beside(options.postprocess, base))
        entries.append(ModelEntry(spec, options))
    return entries


def configured_models(environ: Mapping[str, str] = os.environ, directory: Path | None = None) -> list[ModelEntry]:
    """The models ``fmw dashboard --model ...`` passed (``FMW_MODELS``), then those of
    ``fmw-models.toml`` in ``directory`` (default: the working directory), when it exists."""
    entries = entries_from_json(environ[MODELS_VARIABLE]) if environ.get(MODELS_VARIABLE) else []
    config = (directory or Path.cwd()) / CONFIG_FILE
    if config.is_file():
        entries += read_model_config(config)
    return entries
