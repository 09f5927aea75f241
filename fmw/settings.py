"""Where fmw looks for files it does not get told about: the checkpoint folder the dashboard lists
and the CIFAR-10 copy training and statistics read by default. Each is an environment variable
with a default relative to the source tree (a checkout of the repository, installed editable)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CHECKPOINT_DIRECTORY_VARIABLE", "DATA_VARIABLE", "SOURCE_TREE", "checkpoint_directory", "default_data_path"]

CHECKPOINT_DIRECTORY_VARIABLE = "FMW_CHECKPOINT_DIR"
DATA_VARIABLE = "FMW_DATA"
SOURCE_TREE = Path(__file__).resolve().parents[1]


def _configured(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def checkpoint_directory() -> Path:
    """``$FMW_CHECKPOINT_DIR`` when set, else ``checkpoints/`` of the source tree (the shipped six)."""
    return _configured(CHECKPOINT_DIRECTORY_VARIABLE) or SOURCE_TREE / "checkpoints"


def default_data_path() -> Path:
    """``$FMW_DATA`` when set (a zip or folder in ImageFolder layout, or ``torchvision:DIR``), else the
    project's shared CIFAR-10 (JPEG) zip beside the source tree, ``../shared/data/cifar10-jpg.zip``."""
    return _configured(DATA_VARIABLE) or SOURCE_TREE.parent / "shared" / "data" / "cifar10-jpg.zip"
