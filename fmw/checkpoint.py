"""Checkpoints: an fmw model saved as ``.safetensors`` with its metadata (architecture, weighting,
classes, preprocessing, metrics, recipe, code version), and loading that never unpickles.

Every refusal raises ``CheckpointError`` whose message says what was wrong and what to do.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

import fmw
from fmw.models import FMWNet, NetConfig, build_model

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointMetadata",
    "LoadedCheckpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_safetensors",
    "load_pickled_state_dict",
    "compare_state_dicts",
    "code_version",
]

FORMAT_NAME = "fmw-checkpoint"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_STAGES = 14  # each stage halves the input: 2**15 px per side is more than any decodable image (fmw.decode.MAX_SIDE)
MAX_INPUT_SIDE = 4096  # the native analysis size is built at full size on every request
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class CheckpointError(ValueError):
    """A checkpoint was refused; the message names the problem and what to do."""


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
    def from_strings(cls, strings: dict[str, str] | None, source: str) -> "CheckpointMetadata":
        if not strings:
            raise CheckpointError(
                f"{source}: the file has no fmw metadata (it is a bare safetensors file). fmw checkpoints "
                "carry their architecture and classes; save models with fmw.checkpoint.save_checkpoint."
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

        def parse(key: str):
            try:
                return json.loads(strings[key])
            except (json.JSONDecodeError, TypeError, RecursionError):
                raise CheckpointError(f"{source}: metadata {key!r} is not valid JSON: {strings[key][:80]!r}") from None

        try:
            version = int(strings["format_version"])
        except ValueError:
            raise CheckpointError(f"{source}: format_version {strings['format_version']!r} is not an integer") from None
        if version < 1:
            raise CheckpointError(f"{source}: format_version {version} is not a version fmw ever wrote (they start at 1)")
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
            raise CheckpointError(f"{source}: logit_scale must be a finite number below 2**63, got {architecture.logit_scale!r}")
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
                f"{source}: normalization needs {architecture.in_channels} finite means and as many finite positive stds"
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
    model: FMWNet
    metadata: CheckpointMetadata
    source: str


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
    return f"{fmw.__version__}+{commit}" if commit else fmw.__version__


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


_PICKLE_SIGNATURES = {
    b"PK\x03\x04": "a zip archive (the format of torch.save)",
    b"\x80": "a Python pickle",
}


def _looks_like_safetensors(data: bytes) -> bool:
    """A plausible header length followed by the header's opening brace. Checked before the
    pickle signatures: a header length whose low byte is 0x80 starts like a pickle."""
    if len(data) < 9:
        return False
    (header_length,) = struct.unpack("<Q", data[:8])
    return header_length <= min(MAX_HEADER_BYTES, len(data) - 8) and data[8:9] == b"{"


def _refuse_non_safetensors(data: bytes, source: str) -> None:
    if len(data) == 0:
        raise CheckpointError(f"{source}: the file is empty. Choose an fmw .safetensors checkpoint.")
    if _looks_like_safetensors(data):
        return
    for signature, what in _PICKLE_SIGNATURES.items():
        if data.startswith(signature):
            raise CheckpointError(
                f"{source}: this is {what}, not safetensors. fmw never unpickles checkpoints because "
                "unpickling can run arbitrary code. Save it with fmw.checkpoint.save_checkpoint, or load a "
                "torchvision state dict through the model zoo (read with torch.load(weights_only=True))."
            )
    if len(data) < 8:
        raise CheckpointError(f"{source}: {len(data)} bytes is too short to be a safetensors file (header missing)")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CheckpointError(
            f"{source}: not a valid safetensors file (declared header of {header_length} bytes, "
            f"file has {len(data)}); it is truncated or not a checkpoint."
        )
    if data[8:9] != b"{":
        raise CheckpointError(f"{source}: not a safetensors file (no JSON header); it is probably another format")


def read_safetensors(data: bytes, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors byte string, refusing anything else with a clear error."""
    _refuse_non_safetensors(data, source)
    try:
        header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{source}: the safetensors header is not valid JSON; the file is damaged") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: the safetensors header is not a JSON object; the file is damaged")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{source}: safetensors metadata must map strings to strings")
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as error:
        raise CheckpointError(f"{source}: the safetensors data is inconsistent ({error}); the file is damaged") from None
    return tensors, metadata


def compare_state_dicts(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 5
) -> list[str]:
    """Problems that keep ``found`` from loading into a model whose state dict is ``expected``:
    missing and unexpected keys, shape and dtype-kind mismatches, the first ``limit`` of each."""
    problems = []
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes = [
        f"{key}: file {tuple(found[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in found and found[key].shape != expected[key].shape
    ]
    kinds = [
        f"{key}: file {found[key].dtype} vs model {expected[key].dtype}"
        for key in expected
        if key in found and found[key].dtype.is_floating_point != expected[key].dtype.is_floating_point
    ]
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
        ("dtype mismatches", kinds),
    ):
        if items:
            more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
            problems.append(f"{len(items)} {label}: {'; '.join(items[:limit])}{more}")
    return problems


def load_checkpoint(
    source: str | Path | bytes, device: str | torch.device = "cpu", name: str | None = None
) -> LoadedCheckpoint:
    """Load an fmw checkpoint (a path or the file's bytes) into an eval-mode model on ``device``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "uploaded checkpoint"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise CheckpointError(f"{label}: no such file. Give the path of an fmw .safetensors checkpoint.")
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


def load_pickled_state_dict(data: bytes, source: str = "state dict") -> dict[str, torch.Tensor]:
    """Read a ``torch.save``d state dict with ``torch.load(weights_only=True)``: plain tensors and
    containers only; anything that would need arbitrary code is refused, never executed."""
    import io
    import pickle

    if not data:
        raise CheckpointError(f"{source}: the file is empty")
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{source}: refused: not a plain state dict that can be read safely ({first_line[:200]}). "
            "Save it with torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{source}: expected a dict of parameter names to tensors (a state dict)")
    return loaded
