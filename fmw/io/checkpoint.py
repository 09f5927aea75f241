"""Checkpoints: an fmw model saved as ``.safetensors`` with its metadata (architecture, weighting,
classes, preprocessing, metrics, recipe, code version), and loading that never unpickles."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors_bytes

from fmw._version import __version__
from fmw.errors import CheckpointError
from fmw.io.decode import MAX_SIDE
from fmw.models import FMWNet, NetConfig, Preprocessing, build_model
from fmw.models.weights import compare_state_dicts, read_safetensors
from fmw.settings import SHIPPED_CHECKPOINTS, checkpoint_directory

FORMAT_NAME = "fmw-checkpoint"


FORMAT_VERSION = 1


# each stage halves the input: a model with more stages would need a larger side than any decodable image
MAX_STAGES = math.floor(math.log2(MAX_SIDE))


MAX_INPUT_SIDE = 4096  # the native analysis size is built at full size on every request


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class CheckpointMetadata:
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


@dataclass
class LoadedCheckpoint:
    """An fmw network read from a checkpoint, with its metadata and where it came from."""

    model: FMWNet
    metadata: CheckpointMetadata
    source: str

    @property
    def preprocessing(self) -> Preprocessing:
        """Its one preprocessing: the centred window of its input's aspect, resized to its input size."""
        metadata = self.metadata
        return Preprocessing.centre_window(metadata.input_size, metadata.mean, metadata.std)


def code_version() -> str:
    """fmw's version plus the git commit of the working tree when there is one."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def save_checkpoint(path: str | Path, model: FMWNet, metadata: CheckpointMetadata) -> Path:
    """Write ``model``'s weights and ``metadata`` to ``path`` (a .safetensors file)."""
    if model.config != metadata.architecture:
        raise ValueError("metadata.architecture differs from the model's config")
    if not metadata.code_version:
        metadata.code_version = code_version()
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save_safetensors_bytes(tensors, metadata=metadata.to_strings()))
    return path


def shipped_names() -> list[str]:
    """The names of the checkpoints fmw ships (``cbam``, ``channel``, ...), which ``load_checkpoint``
    and every ``--model`` / ``--checkpoint`` option take in place of a path."""
    return sorted(path.stem for path in SHIPPED_CHECKPOINTS.glob("*.safetensors"))


def checkpoint_by_name(name: str) -> Path | None:
    """The checkpoint a bare ``name`` (no folder; ``.safetensors`` optional) stands for: the file of
    that name in the checkpoint folder (``$FMW_CHECKPOINT_DIR``), else the shipped one; None when
    ``name`` is a path or neither has it."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    stem = name.removesuffix(".safetensors")
    for folder in (checkpoint_directory(), SHIPPED_CHECKPOINTS):
        path = folder / f"{stem}.safetensors"
        if path.is_file():
            return path
    return None


def load_checkpoint(
    source: str | Path | bytes, device: str | torch.device = "cpu", name: str | None = None
) -> LoadedCheckpoint:
    """Load an fmw checkpoint (a path, the name of a shipped one such as ``"cbam"``, or the file's
    bytes) into an eval-mode model on ``device``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "uploaded checkpoint"
    else:
        path = Path(source)
        if not path.is_file():
            path = checkpoint_by_name(str(source)) or path
        label = name or str(path)
        if not path.is_file():
            raise CheckpointError(
                f"{label}: no such file. Give the path of an fmw .safetensors checkpoint, or the name of a "
                f"shipped one ({', '.join(shipped_names())})."
            )
        data = path.read_bytes()
    tensors, strings = read_safetensors(data, label)
    metadata = CheckpointMetadata.from_strings(strings, label)
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated until the file's tensors fit them
            expected = build_model(metadata.architecture).state_dict()
    except (RuntimeError, TypeError, OverflowError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{label}: the declared architecture (widths {list(metadata.architecture.widths)[:8]}) cannot be built "
            f"({first_line}); the file is damaged or not an fmw checkpoint."
        ) from None
    problems = compare_state_dicts(expected, tensors)
    if problems:
        raise CheckpointError(
            f"{label}: the tensors do not fit the declared architecture "
            f"({metadata.architecture.weighting}, widths {list(metadata.architecture.widths)}): " + " | ".join(problems)
        )
    converted = {key: tensor.to(expected[key].dtype) for key, tensor in tensors.items()}
    damaged = [key for key, tensor in converted.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if damaged:
        more = f" (and {len(damaged) - 5} more)" if len(damaged) > 5 else ""
        raise CheckpointError(
            f"{label}: {len(damaged)} tensors hold NaN or infinite values ({', '.join(damaged[:5])}{more}); "
            "the file is damaged or the training diverged."
        )
    model = build_model(metadata.architecture)
    model.load_state_dict(converted)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, metadata=metadata, source=label)
