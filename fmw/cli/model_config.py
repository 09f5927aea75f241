"""The models the dashboard is configured to offer beside its checkpoint folder: those given to
``fmw dashboard --model SPEC ...`` (passed to the server as JSON in ``FMW_MODELS``) and the
``[[model]]`` tables of ``fmw-models.toml`` in the working directory (README: "Your models in the
dashboard"). Each is a SPEC with its ``ModelOptions``; ``fmw.io.model_spec.load_model`` opens it."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmw.errors import FMWError
from fmw.io.model_spec import ModelOptions
from fmw.models.tasks import TASKS

__all__ = [
    "CONFIG_FILE",
    "MODELS_VARIABLE",
    "ModelEntry",
    "configured_models",
    "entries_from_json",
    "entries_to_json",
    "read_model_config",
]

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
