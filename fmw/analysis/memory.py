"""Running work on a GPU that may run out of memory: ``run_with_memory_fallback`` retries with half
the batch, down to one, then on the CPU, and says what it did."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from fmw.analysis.images import ImageAnalysis, analyse_images
from fmw.models import ModelHandle

__all__ = ["DeviceRun", "analyse_images_on_device", "release_cuda_memory", "run_with_memory_fallback"]

Result = TypeVar("Result")


@dataclass
class DeviceRun(Generic[Result]):
    """What ``run_with_memory_fallback`` computed, where, in batches of what size, and the notice
    to show the user when it had to step down (None when the first attempt succeeded)."""

    value: Result
    device: str
    batch_size: int
    notice: str | None = None


def release_cuda_memory() -> None:
    """Drop unreachable tensors and return the CUDA caching allocator's free blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_memory_fallback(work: Callable[[str, int], Result], device: str, batch_size: int = 1) -> DeviceRun[Result]:
    """``work(device, batch_size)``, stepping down on a CUDA out-of-memory error.

    On the error, the memory is released and ``work`` runs again with half the batch, down to 1,
    then on the CPU. Out-of-memory on the CPU itself is not caught.

    Args:
        work: computes the result on a device in batches of a size.
        device: where to try first ("cuda", "cuda:1", "cpu", ...).
        batch_size: the batch size to try first.

    Returns:
        The result, the device and batch size that computed it, and a notice saying what was done
        (None when the first attempt succeeded).

    Examples:
        >>> def work(device, batch_size):  # as if a batch of more than 16 did not fit on the GPU
        ...     if device == "cuda" and batch_size > 16:
        ...         raise torch.cuda.OutOfMemoryError("simulated")
        ...     return f"{batch_size} images at a time on {device}"
        >>> run = run_with_memory_fallback(work, "cuda", 64)
        >>> run.value
        '16 images at a time on cuda'
        >>> run.notice
        'The GPU ran out of memory, so this ran in batches of 32 then in batches of 16. Results are the same.'
    """
    steps: list[str] = []
    while True:
        try:
            value = work(device, batch_size)
        except torch.cuda.OutOfMemoryError:
            pass  # released below, once the exception (and the frames holding tensors) is gone
        else:
            notice = None
            if steps:
                notice = f"The GPU ran out of memory, so this ran {' then '.join(steps)}. Results are the same."
            return DeviceRun(value=value, device=device, batch_size=batch_size, notice=notice)
        release_cuda_memory()
        if torch.device(device).type != "cuda":
            raise torch.cuda.OutOfMemoryError(f"out of memory on {device} even with a batch of {batch_size}")
        if batch_size > 1:
            batch_size //= 2
            steps.append(f"in batches of {batch_size}")
        else:
            device = "cpu"
            steps.append("on the CPU")


def analyse_images_on_device(
    load: Callable[[str], ModelHandle],
    rgbs: list[np.ndarray],
    device: str,
    resolution: int | None = None,
    name: str | None = None,
    batch_size: int = 16,
    threshold: float = 0.5,
) -> DeviceRun[list[ImageAnalysis]]:
    """``analyse_images`` on ``device`` with the out-of-memory fallback.

    Args:
        load: gives the model on a device (the dashboard's cached loader), so falling back never
            moves a shared model.
        rgbs, resolution, name, batch_size, threshold: as for ``analyse_images``.
        device: where to try first.

    Returns:
        The analyses with the device and batch size that made them.

    Examples:
        >>> import fmw
        >>> from fmw.io.model_spec import ModelOptions
        >>> def load(device):
        ...     return fmw.load_model("cbam", ModelOptions(device=device))
        >>> run = analyse_images_on_device(load, [np.zeros((32, 32, 3), np.uint8)], "cpu")
        >>> run.device, run.batch_size, run.notice, len(run.value)
        ('cpu', 16, None, 1)
    """
    return run_with_memory_fallback(
        lambda on, batch: analyse_images(load(on), rgbs, resolution, name=name, batch_size=batch, threshold=threshold),
        device,
        batch_size,
    )
