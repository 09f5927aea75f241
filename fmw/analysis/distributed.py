"""Several processes under ``torchrun``: joining the process group (gloo on the CPU, NCCL on CUDA),
each process's device, and the one sum over processes that the dataset-wide accumulators need."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

Picklable = TypeVar("Picklable")

__all__ = ["all_gather_objects", "all_reduce_sum", "process_device", "process_group", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def process_device(device: torch.device) -> torch.device:
    """``device``, or under torchrun with CUDA this process's own GPU (``cuda:$LOCAL_RANK``)."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """Join the process group torchrun describes (``$WORLD_SIZE`` > 1), NCCL when ``device`` is a
    GPU, else gloo, and leave it on exit; yields (rank, world size). Without torchrun, (0, 1)."""
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if joined:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield rank_and_world()
    except BaseException:
        if joined:  # no barrier: the other processes may be waiting in a reduction this one never reaches
            dist.destroy_process_group()
        raise
    if joined:
        dist.barrier()  # no process tears the group down while another still reduces
        dist.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor summed over every process, in one ``all_reduce`` of one float64 buffer (on the
    GPU for NCCL, else the CPU); each comes back with its own dtype and device. Values that are
    integers stay exact up to 2**53. Without a process group the tensors come back as they are."""
    if rank_and_world()[1] == 1 or not tensors:
        return tensors
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buffer = torch.cat([tensor.detach().to(device, torch.float64).flatten() for tensor in tensors])
    dist.all_reduce(buffer)
    parts = buffer.split([tensor.numel() for tensor in tensors])
    return [part.view(tensor.shape).to(tensor.device, tensor.dtype) for part, tensor in zip(parts, tensors)]


def all_gather_objects(value: Picklable) -> list[Picklable]:
    """``value`` from every process, in rank order (``[value]`` without a process group)."""
    world = rank_and_world()[1]
    if world == 1:
        return [value]
    gathered: list[Picklable] = [value] * world
    dist.all_gather_object(gathered, value)
    return gathered
