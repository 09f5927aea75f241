"""Where fmw looks for files it does not get told about: the shipped checkpoints (package data, so
they travel with the wheel), the checkpoint folder the dashboard lists, the dataset training and
statistics read by default, and the cache folder downloads go to. Each folder that can be
configured is an environment variable with a default that works from any installed copy. Also the
largest image side fmw decodes, which bounds the depth of a checkpoint it will build."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_VARIABLE",
    "CHECKPOINT_DIRECTORY_VARIABLE",
    "DATA_VARIABLE",
    "MAX_SIDE",
    "SHIPPED_CHECKPOINTS",
    "SOURCE_TREE",
    "cache_directory",
    "checkpoint_directory",
    "default_data_path",
    "development_data_path",
]

CHECKPOINT_DIRECTORY_VARIABLE = "FMW_CHECKPOINT_DIR"
DATA_VARIABLE = "FMW_DATA"
CACHE_VARIABLE = "FMW_CACHE_DIR"

MAX_SIDE = 30_000  # the largest image side fmw decodes (``fmw.io.decode``), in pixels

# The checkpoints fmw ships, inside the package (``fmw/checkpoints/``): the same folder in a checkout,
# an editable install and a wheel installed anywhere.
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
# The repository checkout this package runs from, when it runs from one (None for an installed wheel).
_PARENT = Path(__file__).resolve().parents[1]
SOURCE_TREE: Path | None = _PARENT if (_PARENT / "pyproject.toml").is_file() and (_PARENT / "fmw").is_dir() else None


def _configured(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def checkpoint_directory() -> Path:
    """``$FMW_CHECKPOINT_DIR`` when set (your own checkpoints), else the shipped checkpoints."""
    return _configured(CHECKPOINT_DIRECTORY_VARIABLE) or SHIPPED_CHECKPOINTS


def cache_directory() -> Path:
    """Where fmw keeps what it downloads: ``$FMW_CACHE_DIR`` when set, else ``fmw`` in the user's
    cache folder (``$XDG_CACHE_HOME``, default ``~/.cache``)."""
    configured = _configured(CACHE_VARIABLE)
    if configured is not None:
        return configured
    base = _configured("XDG_CACHE_HOME") or Path.home() / ".cache"
    return base / "fmw"


def development_data_path() -> Path | None:
    """The project's shared CIFAR-10 (JPEG) zip beside a checkout, ``../shared/data/cifar10-jpg.zip``,
    when this package runs from a checkout that has it (the development set-up), else None."""
    if SOURCE_TREE is None:
        return None
    path = SOURCE_TREE.parent / "shared" / "data" / "cifar10-jpg.zip"
    return path if path.is_file() else None


def default_data_path() -> Path:
    """The dataset ``fmw train / evaluate / stats`` read without ``--data``: ``$FMW_DATA`` when set
    (a zip or folder in ImageFolder layout, or ``torchvision:DIR``); else the development set-up's
    shared CIFAR-10 zip (``development_data_path``); else torchvision's CIFAR-10 in the cache folder,
    ``torchvision:<cache>/cifar10``, which is downloaded there on first use."""
    return _configured(DATA_VARIABLE) or development_data_path() or Path(f"torchvision:{cache_directory() / 'cifar10'}")
