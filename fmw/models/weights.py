"""Reading weights safely: safetensors bytes, ``torch.save`` state dicts through
``torch.load(weights_only=True)``, and the list of what keeps a state dict from fitting a model."""

from __future__ import annotations

import json
import struct

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from fmw.errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024 * 1024


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
                "unpickling can run arbitrary code. Save it with fmw.io.save_checkpoint, or load a "
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
        raise CheckpointError(
            f"{source}: the safetensors data is inconsistent ({error}); the file is damaged"
        ) from None
    return tensors, metadata


def compare_state_dicts(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 5) -> list[str]:
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


STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


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
    for key in STATE_DICT_KEYS:  # a training checkpoint holding the state dict under a usual key
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{source}: expected a dict of parameter names to tensors (a state dict)")
    return loaded
