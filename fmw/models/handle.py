"""One handle for every model, whatever it came from (an fmw checkpoint, torchvision, timm, a user's
factory): the module with its name, classes, one preprocessing, task and what else analysis reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from fmw.models.fmwnet import FMWNet
from fmw.models.metadata import CheckpointMetadata
from fmw.models.preprocessing import Preprocessing

__all__ = ["FOREIGN_MINIMUM_SIZE", "Family", "ModelHandle"]

Family = Literal["fmw", "torchvision", "timm", "user"]

FOREIGN_MINIMUM_SIZE = 32  # torchvision and timm networks downsample by 32


@dataclass
class ModelHandle:
    """A model ready to analyse: ``model`` in eval mode on its device; ``name`` to show; ``family``,
    where it came from; its ``class_names`` and its one ``preprocessing``; ``task``
    (``fmw.models.tasks.TASKS``), what its output means, and ``postprocess``, when set, what turns
    its raw output into the task's structure (a YOLO-style head's maps into boxes);
    ``random_weights``, True for an untrained initialisation (label every view); ``source``, where it
    came from (a path, a SPEC); ``minimum_input_size``, the smallest side it takes at another
    resolution than its own (the size it was opened at always works); ``checkpoint``, an fmw
    checkpoint's training metadata (architecture, metrics, recipe), None for any other model."""

    model: nn.Module
    name: str
    family: Family
    class_names: list[str]
    preprocessing: Preprocessing
    source: str = ""
    task: str = "classification"
    postprocess: Callable[[Any], Any] | None = None
    random_weights: bool = False
    minimum_input_size: int = FOREIGN_MINIMUM_SIZE
    checkpoint: CheckpointMetadata | None = None

    @classmethod
    def from_checkpoint(cls, model: FMWNet, metadata: CheckpointMetadata, source: str) -> ModelHandle:
        """An fmw network and its checkpoint's metadata: a classifier named after the file, prepared
        by the centred window of its input's aspect resized to its input size."""
        return cls(
            model=model,
            name=Path(source).stem,
            family="fmw",
            class_names=metadata.class_names,
            preprocessing=Preprocessing.centre_window(metadata.input_size, metadata.mean, metadata.std),
            source=source,
            minimum_input_size=metadata.architecture.minimum_input_size,
            checkpoint=metadata,
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of its prepared input."""
        return self.preprocessing.input_size

    @property
    def in_channels(self) -> int:
        return len(self.preprocessing.mean)

    @property
    def label(self) -> str:
        return f"{self.name} (random weights)" if self.random_weights else self.name

    @property
    def weighting(self) -> str | None:
        """The weighting its checkpoint declares (fmw checkpoints); None: found by probing it."""
        return None if self.checkpoint is None else self.checkpoint.weighting

    @property
    def metrics(self) -> dict:
        """The accuracies its training recorded (fmw checkpoints); empty for any other model."""
        return {} if self.checkpoint is None else self.checkpoint.metrics
