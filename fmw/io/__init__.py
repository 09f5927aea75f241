"""Input and output of files: fmw checkpoints (``.safetensors`` with metadata), image uploads decoded
safely, and the image datasets training and statistics read."""

from __future__ import annotations

from fmw.io.checkpoint import (
    CheckpointMetadata,
    LoadedCheckpoint,
    checkpoint_by_name,
    checkpoint_header,
    load_checkpoint,
    save_checkpoint,
    shipped_names,
)
from fmw.io.datasets import CIFAR10_CLASSES, ImageSplit, load_split, normalize
from fmw.io.decode import DecodedImage, decode_image, sniff_format

__all__ = [
    "CIFAR10_CLASSES",
    "CheckpointMetadata",
    "DecodedImage",
    "ImageSplit",
    "LoadedCheckpoint",
    "checkpoint_by_name",
    "checkpoint_header",
    "decode_image",
    "load_checkpoint",
    "load_split",
    "normalize",
    "save_checkpoint",
    "shipped_names",
    "sniff_format",
]
