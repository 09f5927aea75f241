"""Which models the dashboard offers and how each is opened (no streamlit here): the checkpoint folder's
files, the models ``fmw dashboard --model`` or ``fmw-models.toml`` name, zoo models added in the
sidebar and uploaded checkpoints, each a ``ModelChoice`` with a unique key.

Everything but an upload is a SPEC opened by ``fmw.io.model_spec.load_model`` (one dispatch for the
command line, the notebook and the dashboard), cached per SPEC, options, file version and device in
``dashboard.caching.MODELS``; an upload is opened from its bytes and kept in its session. Labels are
for people: where two models share one, the later ones say in words where they come from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dashboard.caching import MODELS
from fmw.analysis import ModelHandle, list_checkpoints
from fmw.cli.model_config import ModelEntry, configured_models
from fmw.io import checkpoint_header, load_checkpoint
from fmw.io.model_spec import ModelOptions, load_model, spec_name
from fmw.models import load_state_dict_upload
from fmw.settings import checkpoint_directory

Origin = Literal["file", "command line", "torchvision", "timm", "upload"]
ALLOW_DOWNLOAD_VARIABLE = "FMW_ALLOW_DOWNLOAD"
STATE_DICT_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class ModelChoice:
    """A model the views can analyse. ``key`` identifies it (the sidebar's selection and every cache are
    keyed by it, never by the label); ``label`` is shown everywhere (random weights say so; unique among
    the models offered); ``spec`` and ``options`` open it (uploads have no SPEC); ``version`` is a
    checkpoint file's modification time, so a file replaced on disk is opened again."""

    label: str
    key: str
    origin: Origin
    spec: str = ""
    options: ModelOptions = field(default_factory=ModelOptions)
    path: str = ""
    version: float = 0.0
    weighting: str = ""  # checkpoint files: the kind their header names ("" where unknown)
    weighting_off_drop: float | None = None  # checkpoint files: test top-1 lost with weighting off, if recorded

    @property
    def known_unweighted(self) -> bool:
        """True only for a checkpoint whose header says it has no weighting layer."""
        return self.weighting == "none"

    @property
    def cache_key(self) -> str:
        """What identifies this model's weights in the caches: its key and its file's version."""
        return f"{self.key}@{self.version}"


def downloads_allowed() -> bool:
    """Whether ImageNet weights missing from the torch cache may be downloaded (``FMW_ALLOW_DOWNLOAD=1``)."""
    return os.environ.get(ALLOW_DOWNLOAD_VARIABLE, "").strip() == "1"


def file_version(path: Path) -> float:
    """The modification time, so a checkpoint replaced on disk is loaded again."""
    return path.stat().st_mtime


@functools.lru_cache(maxsize=512)
def header_metadata(path: str, version: float) -> dict[str, str]:
    """A checkpoint's header metadata (``fmw.io.checkpoint_header``), read once per file version."""
    return checkpoint_header(path)


def header_weighting(path: str, version: float) -> str:
    """The weighting kind a checkpoint's header names ("" when unreadable or absent)."""
    return header_metadata(path, version).get("weighting", "")


def header_weighting_off_drop(path: str, version: float) -> float | None:
    """Test top-1 with weighting on minus with it off, as a checkpoint's header records them (None
    when it records no such pair)."""
    try:
        metrics = json.loads(header_metadata(path, version).get("metrics", "{}"))
        on, off = metrics["test_top1"], metrics["test_top1_weighting_off"]
    except (ValueError, KeyError, TypeError):
        return None
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (on, off))
    return float(on) - float(off) if numbers else None


def file_choices() -> tuple[Path, list[ModelChoice]]:
    """The checkpoint folder and one choice per ``.safetensors`` file in it."""
    directory = checkpoint_directory()
    choices = []
    for path in list_checkpoints(directory):
        version = file_version(path)
        choices.append(
            ModelChoice(
                path.stem,
                f"file:{path}",
                "file",
                spec=str(path),
                path=str(path),
                version=version,
                weighting=header_weighting(str(path), version),
                weighting_off_drop=header_weighting_off_drop(str(path), version),
            )
        )
    return directory, choices


@functools.cache
def command_line_entries() -> tuple[ModelEntry, ...]:
    """The models the user gave ``fmw dashboard --model`` or listed in ``fmw-models.toml``, read
    once per server: their code is imported only because the user named it on this machine."""
    return tuple(configured_models())


def command_line_choices(entries: Sequence[ModelEntry]) -> list[ModelChoice]:
    """One choice per command-line model."""
    choices = []
    for index, entry in enumerate(entries):
        key = f"command line:{index}:{entry.spec}"
        choices.append(ModelChoice(spec_name(entry.spec), key, "command line", entry.spec, entry.options))
    return choices


def zoo_choice(origin: Literal["torchvision", "timm"], architecture: str, weights: str) -> ModelChoice:
    """A torchvision or timm model added in the sidebar; ``weights``: "default" or "random"."""
    random = weights == "random"
    label = f"{architecture} (random weights)" if random else architecture
    options = ModelOptions(random_weights=random, allow_download=downloads_allowed())
    return ModelChoice(label, f"{origin}:{architecture}:{weights}", origin, f"{origin}:{architecture}", options)


def open_upload(data: bytes, filename: str, architecture: str) -> tuple[str, ModelHandle]:
    """An fmw ``.safetensors`` checkpoint, or a torchvision state dict (``.pth``/``.pt``) for
    ``architecture``, with its label; both readers refuse anything that could run code."""
    if filename.lower().endswith(STATE_DICT_SUFFIXES):
        model = load_state_dict_upload(data, architecture, filename)  # its name says the file
        return model.label, model
    model = load_checkpoint(data, name=filename).handle()
    return f"{model.label} (uploaded)", model


ORIGIN_WORDS: dict[Origin, str] = {
    "file": "checkpoint folder",
    "command line": "your models",
    "torchvision": "torchvision",
    "timm": "timm",
    "upload": "uploaded",
}


def distinct_labels(choices: Sequence[ModelChoice]) -> list[ModelChoice]:
    """``choices`` with unique labels: the first of a label keeps it, a later one says where it comes
    from (a command-line model its SPEC, others their origin), then a number if that is not enough."""
    taken: set[str] = set()
    named = []
    for choice in choices:
        label = choice.label
        if label in taken:
            words = choice.spec if choice.origin == "command line" else ORIGIN_WORDS[choice.origin]
            label = f"{choice.label} ({words})"
            number = 2
            while label in taken:
                label, number = f"{choice.label} ({words}, {number})", number + 1
        taken.add(label)
        named.append(choice if label == choice.label else dataclasses.replace(choice, label=label))
    return named


def is_open(choice: ModelChoice, device: str) -> bool:
    """Whether ``choice`` is opened on ``device`` already (uploads always are)."""
    return choice.origin == "upload" or (choice.cache_key, device) in MODELS


def open_choice(choice: ModelChoice, device: str, uploads: Mapping[str, ModelHandle]) -> ModelHandle:
    """The model behind ``choice`` on ``device``: a SPEC through ``load_model`` (cached), an upload
    from ``uploads`` (this session's, by key)."""
    if choice.origin != "upload":
        options = dataclasses.replace(choice.options, device=device)
        return MODELS.get_or_compute((choice.cache_key, device), lambda: load_model(choice.spec, options))
    if choice.key not in uploads:
        raise KeyError(f"{choice.label} is no longer uploaded; upload the file again in the sidebar")
    model = uploads[choice.key]
    model.model.to(device)  # private to this session, so moving it in place affects no one else
    return model
