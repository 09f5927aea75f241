"""An fmw checkpoint's metadata: the architecture, classes, preprocessing, metrics and training
recipe saved beside its weights, and how they are written to and read back from safetensors strings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from fmw.errors import CheckpointError
from fmw.models.fmwnet import NetConfig
from fmw.settings import MAX_SIDE

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_INPUT_SIDE",
    "MAX_STAGES",
    "CheckpointMetadata",
]
FORMAT_NAME = "fmw-checkpoint"


FORMAT_VERSION = 1


# each stage halves the input: a model with more stages would need a larger side than any decodable image
MAX_STAGES = math.floor(math.log2(MAX_SIDE))


MAX_INPUT_SIDE = 4096  # the native analysis size is built at full size on every request


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class CheckpointMetadata:
    """What an fmw checkpoint says of its network besides the weights."""

    architecture: NetConfig
    class_names: list[str]
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    input_size: tuple[int, int] = (32, 32)
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    code_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def weighting(self) -> str:
        return self.architecture.weighting

    def to_strings(self) -> dict[str, str]:
        return {
            "format": FORMAT_NAME,
            "format_version": str(self.format_version),
            "architecture": self.architecture.to_json(),
            "weighting": self.weighting,
            "class_names": json.dumps(self.class_names),
            "normalization": json.dumps({"mean": list(self.mean), "std": list(self.std)}),
            "input_size": json.dumps(list(self.input_size)),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "recipe": json.dumps(self.recipe, sort_keys=True),
            "code_version": self.code_version,
        }

    @classmethod
    def from_strings(cls, strings: dict[str, str] | None, source: str) -> CheckpointMetadata:
        if not strings:
            raise CheckpointError(
                f"{source}: the file has no fmw metadata (it is a bare safetensors file). fmw checkpoints "
                "carry their architecture and classes; save models with fmw.io.save_checkpoint."
            )
        if strings.get("format") != FORMAT_NAME:
            raise CheckpointError(
                f"{source}: metadata 'format' is {strings.get('format')!r}, expected {FORMAT_NAME!r}; "
                "this safetensors file was not written by fmw."
            )
        required = ["format_version", "architecture", "weighting", "class_names", "normalization", "input_size"]
        missing = [key for key in required if key not in strings]
        if missing:
            raise CheckpointError(f"{source}: metadata lacks {', '.join(missing)}; re-save the model with fmw.")

        def parse(key: str) -> Any:  # a JSON value, checked where it is used
            try:
                return json.loads(strings[key])
            except (json.JSONDecodeError, TypeError, RecursionError):
                raise CheckpointError(f"{source}: metadata {key!r} is not valid JSON: {strings[key][:80]!r}") from None

        try:
            version = int(strings["format_version"])
        except ValueError:
            raise CheckpointError(f"{source}: format_version {strings['format_version']!r} is not an integer") from None
        if version < 1:
            raise CheckpointError(
                f"{source}: format_version {version} is not a version fmw ever wrote (they start at 1)"
            )
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format version {version} is newer than this fmw understands "
                f"({FORMAT_VERSION}); upgrade fmw."
            )
        try:
            architecture = NetConfig.from_dict(parse("architecture"))
        except ValueError as error:
            raise CheckpointError(f"{source}: {error}") from None
        if len(architecture.widths) > MAX_STAGES:
            raise CheckpointError(
                f"{source}: the architecture declares {len(architecture.widths)} stages; at most {MAX_STAGES} can "
                "see an image (each halves its size), so the file is damaged or not an fmw checkpoint."
            )
        if not _fits_a_tensor(architecture.logit_scale):
            raise CheckpointError(
                f"{source}: logit_scale must be a finite number below 2**63, got {architecture.logit_scale!r}"
            )
        if strings["weighting"] != architecture.weighting:
            raise CheckpointError(
                f"{source}: metadata says weighting {strings['weighting']!r} but the architecture "
                f"says {architecture.weighting!r}; the file is inconsistent."
            )
        class_names = parse("class_names")
        if not (isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)):
            raise CheckpointError(f"{source}: class_names must be a list of strings")
        if len(class_names) != architecture.num_classes:
            raise CheckpointError(
                f"{source}: {len(class_names)} class names for a model with {architecture.num_classes} outputs"
            )
        normalization = parse("normalization")
        try:
            mean = tuple(float(v) for v in normalization["mean"])
            std = tuple(float(v) for v in normalization["std"])
        except (TypeError, KeyError, ValueError, OverflowError):
            raise CheckpointError(f"{source}: normalization must be {{'mean': [...], 'std': [...]}}") from None
        if (
            len(mean) != architecture.in_channels
            or len(std) != architecture.in_channels
            or not all(math.isfinite(v) for v in mean + std)
            or min(std) <= 0
        ):
            raise CheckpointError(
                f"{source}: normalization needs {architecture.in_channels} finite means "
                "and as many finite positive stds"
            )
        input_size = parse("input_size")
        if not (
            isinstance(input_size, list)
            and len(input_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_INPUT_SIDE for v in input_size)
        ):
            raise CheckpointError(
                f"{source}: input_size must be [height, width] of 1 to {MAX_INPUT_SIDE} px each, got {input_size!r}"
            )
        if min(input_size) < architecture.minimum_input_size:
            raise CheckpointError(
                f"{source}: input_size {input_size} is smaller than the {architecture.minimum_input_size} px a side "
                "its architecture takes; the file is inconsistent."
            )
        metrics = parse("metrics") if "metrics" in strings else {}
        recipe = parse("recipe") if "recipe" in strings else {}
        return cls(
            architecture=architecture,
            class_names=class_names,
            mean=mean,
            std=std,
            input_size=(input_size[0], input_size[1]),
            metrics=metrics if isinstance(metrics, dict) else {},
            recipe=recipe if isinstance(recipe, dict) else {},
            code_version=strings.get("code_version", ""),
            format_version=version,
        )


def _fits_a_tensor(number: float) -> bool:
    """True for a finite number torch can multiply a tensor by (an int beyond 64 bits it cannot)."""
    try:
        return abs(float(number)) < 2.0**63
    except OverflowError:
        return False
