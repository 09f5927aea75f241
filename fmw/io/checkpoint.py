"""Checkpoints: an fmw model saved as ``.safetensors`` with its metadata (architecture, weighting,
classes, preprocessing, metrics, recipe, code version), and loading that never unpickles."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors_bytes

from fmw._version import __version__
from fmw.errors import CheckpointError
from fmw.models import FMWNet, ModelHandle, build_model
from fmw.models.metadata import CheckpointMetadata
from fmw.models.weights import compare_state_dicts, read_safetensors
from fmw.settings import SHIPPED_CHECKPOINTS, checkpoint_directory


@dataclass
class LoadedCheckpoint:
    """An fmw network read from a checkpoint, with its metadata and where it came from, typed for
    training and evaluation code; everything that analyses or shows a model takes its ``handle()``."""

    model: FMWNet
    metadata: CheckpointMetadata
    source: str

    def handle(self) -> ModelHandle:
        """The model as every analysis takes it (``fmw.models.ModelHandle``), sharing this module."""
        return ModelHandle.from_checkpoint(self.model, self.metadata, self.source)


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


def checkpoint_header(path: str | Path) -> dict[str, str]:
    """The string metadata in a ``.safetensors`` file's header (architecture, weighting, metrics, ...),
    read without loading any tensor; {} when the header is unreadable (loading the file says why)."""
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # safetensors raises its own error types for damaged headers
        return {}
    return {key: value for key, value in metadata.items() if isinstance(value, str)}


def load_checkpoint(
    source: str | Path | bytes, device: str | torch.device = "cpu", name: str | None = None
) -> LoadedCheckpoint:
    """Load an fmw checkpoint into an eval-mode model on ``device``. The file is a safetensors file
    (never unpickled); its tensors are checked against the architecture its header declares.

    Args:
        source: the path of a ``.safetensors`` checkpoint, the name of a shipped one (``"cbam"``;
            ``$FMW_CHECKPOINT_DIR`` first), or the file's bytes (an upload).
        device: where the model goes.
        name: what messages call the checkpoint (default: its path, or "uploaded checkpoint").

    Returns:
        A ``LoadedCheckpoint``: ``model`` (an ``FMWNet`` in eval mode), ``metadata`` (architecture,
        class names, normalisation, input size, metrics, training recipe) and ``source``;
        ``handle()`` gives the ``ModelHandle`` every analysis takes.

    Raises:
        CheckpointError: for a missing file, a file that is not a safetensors checkpoint of fmw,
            tensors that do not fit the declared architecture, or non-finite weights (the message
            names the file and says what was wrong).

    Examples:
        >>> from fmw import load_checkpoint
        >>> loaded = load_checkpoint("cbam")  # a shipped checkpoint, by name
        >>> loaded.metadata.architecture.weighting, loaded.metadata.class_names[:3], loaded.model.training
        ('cbam', ['airplane', 'automobile', 'bird'], False)
        >>> loaded.handle().name
        'cbam'
    """
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
