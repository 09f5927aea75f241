"""An RGB image made ready for one model (a ``fmw.models.ModelHandle``) by its one preprocessing
(``fmw.models.preprocessing``: an fmw checkpoint's centred window resized with Lanczos filtering, a
zoo model's resize and centre crop, a detector's whole image), at the model's input size or at
another resolution, with the picture the model sees for overlays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmw.io import CheckpointMetadata
from fmw.models import ModelHandle, Preprocessing
from fmw.models.zoo import seen_images

__all__ = ["PreparedImage", "batch_inputs", "model_inputs", "prepare_image", "prepare_input"]


@dataclass
class PreparedImage:
    """An image prepared for one model: the uint8 RGB ``crop`` it sees (for overlays), the
    normalised ``inputs`` (1, 3, H, W) and the ``resolution`` (H, W)."""

    crop: np.ndarray
    inputs: torch.Tensor
    resolution: tuple[int, int]


def prepare_input(crop: np.ndarray, metadata: CheckpointMetadata, resolution: tuple[int, int]) -> torch.Tensor:
    """A (1, 3, H, W) float tensor: the centred window of ``crop`` with the aspect of ``resolution``
    (height, width; all of a crop ``center_crop`` made) resized to it and normalised with the
    checkpoint's mean and std."""
    return Preprocessing.centre_window(resolution, metadata.mean, metadata.std)(crop)


def prepare_image(source: ModelHandle, rgb: np.ndarray, resolution: int | None = None) -> PreparedImage:
    """``rgb`` as ``source`` expects it, by its one preprocessing.

    A detector takes the whole image (its own transform resizes it: ``resolution`` does not apply)
    and its crop is the image as that transform resized and padded it, which its feature maps cover.

    Args:
        source: the model, as ``fmw.load_model`` opens it.
        rgb: the image, (H, W, 3) uint8.
        resolution: pixels square, or None for the model's own input size (the crop keeps its share
            of the image).

    Returns:
        The normalised input (1, 3, H, W), the crop the model sees and its resolution.

    Raises:
        ValueError: ``resolution`` is below the smallest input the model takes.

    Examples:
        >>> import fmw
        >>> handle = fmw.load_model("cbam")  # 32 x 32 inputs
        >>> rgb = np.zeros((60, 90, 3), np.uint8)
        >>> prepared = prepare_image(handle, rgb)
        >>> tuple(prepared.inputs.shape), prepared.crop.shape  # the centred 60 x 60 window, resized
        ((1, 3, 32, 32), (60, 60, 3))
        >>> tuple(handle.model(prepared.inputs).shape)  # CIFAR-10's ten logits
        (1, 10)
        >>> prepare_image(handle, rgb, resolution=64).resolution
        (64, 64)
    """
    preprocessing = source.preprocessing
    if resolution is not None:
        preprocessing = preprocessing.at_resolution(resolution)
    minimum = source.minimum_input_size
    if resolution is not None and not preprocessing.whole_image and min(preprocessing.input_size) < minimum:
        raise ValueError(
            f"{source.label}: resolution {preprocessing.input_size} is too small; "
            f"this model needs at least {minimum} px"
        )
    inputs = preprocessing(rgb)
    crop = preprocessing.picture(rgb)
    if preprocessing.whole_image:
        seen = seen_images(source.model, [inputs[0]])
        crop = crop if seen is None else seen[0].pixels
        return PreparedImage(crop=crop, inputs=inputs, resolution=(crop.shape[0], crop.shape[1]))
    return PreparedImage(crop=crop, inputs=inputs, resolution=(inputs.shape[2], inputs.shape[3]))


def batch_inputs(source: ModelHandle, images: list[np.ndarray], resolution: int | None = None) -> torch.Tensor:
    """Several RGB images prepared for ``source`` as one normalised batch (N, 3, H, W).

    Args:
        source: the model.
        images: (H, W, 3) uint8 images, of any sizes.
        resolution: as for ``prepare_image``.

    Returns:
        The batch, ready for ``fmw.probe(source.model, batch)``.

    Examples:
        >>> import fmw
        >>> handle = fmw.load_model("spatial")
        >>> batch = batch_inputs(handle, [np.zeros((60, 90, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)])
        >>> tuple(batch.shape)
        (2, 3, 32, 32)
        >>> [tuple(site.gates["spatial"].shape) for site in fmw.probe(handle.model, batch).sites]
        [(2, 1, 15, 15), (2, 1, 7, 7), (2, 1, 3, 3)]
    """
    if not images:
        raise ValueError("no images to prepare; give at least one")
    return torch.cat([prepare_image(source, rgb, resolution).inputs for rgb in images])


def model_inputs(source: ModelHandle, prepared: list[PreparedImage]) -> torch.Tensor | list[torch.Tensor]:
    """Prepared images as ``source``'s model takes them: a list of whole images for a detector
    (each at its own size), one normalised batch (N, 3, H, W) otherwise."""
    if source.preprocessing.whole_image:
        return [image.inputs[0] for image in prepared]
    return torch.cat([image.inputs for image in prepared])
