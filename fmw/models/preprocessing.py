"""One preprocessing for every model: how an RGB image becomes the tensor a model takes, for the
dashboard, the notebook, the command line and the ``DataLoader`` workers of dataset statistics alike.

An image first becomes uint8 pixels (``Preprocessing.pixels``; cheap to hand from worker processes),
by one of three geometries:

- fmw checkpoints (``window`` set): the largest centred window of the model's aspect, resized to its
  input size with Lanczos filtering; the crop keeps the whole centre of a photo, as CIFAR-style
  models expect objects filling the frame, and a plain resize would distort them;
- torchvision, timm and users' models: resize the short side, then a centre crop;
- detectors (``whole_image``): the whole image as it is; the model resizes, normalises and pads it
  inside its own transform, so that its boxes come back in the image's own coordinates.

The pixels are then normalised with the model's mean and std (``normalize``; a detector's pixels
only scaled to 0..1), on the model's device where the caller wants it there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

__all__ = ["Preprocessing", "center_crop", "normalize"]


def center_crop(rgb: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """The largest centred window of ``rgb`` with width / height = ``aspect``."""
    height, width = rgb.shape[:2]
    crop_width = min(width, round(height * aspect))
    crop_height = min(height, round(crop_width / aspect))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return rgb[top : top + crop_height, left : left + crop_width]


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised with per-channel ``mean`` and ``std`` (in 0..1 units)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255) - mean_t) / std_t


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model. By default: resize the short side to
    ``resize_size`` (``interpolation``), centre-crop ``crop_size``, normalise with ``mean`` and
    ``std``. With ``window`` (height, width), an fmw checkpoint's: the largest centred window of
    that aspect, resized to it (Lanczos); ``resize_size`` and ``crop_size`` are then its shorter
    side. With ``whole_image`` (detectors), the whole image as 0..1 pixels (``crop_size`` is then
    the short side the detector resizes to)."""

    resize_size: int
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    whole_image: bool = False
    window: tuple[int, int] | None = None

    @classmethod
    def centre_window(cls, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> Preprocessing:
        """An fmw checkpoint's preprocessing at ``size`` (height, width)."""
        return cls(min(size), min(size), tuple(mean), tuple(std), "lanczos", window=(size[0], size[1]))

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the prepared input (a detector's: the short side it resizes to, squared)."""
        return self.window if self.window is not None else (self.crop_size, self.crop_size)

    def describe(self) -> str:
        """The preprocessing in words."""
        if self.whole_image:
            return (
                f"the whole image as 0..1 pixels; the model resizes it (short side {self.crop_size} px), "
                "normalises and pads it itself"
            )
        numbers = ", ".join(f"{value:g}" for value in self.mean), ", ".join(f"{value:g}" for value in self.std)
        if self.window is not None:
            height, width = self.window
            geometry = f"centre crop to the aspect {width}:{height}, resize to {width} x {height} px (lanczos)"
        else:
            resize = f"resize the short side to {self.resize_size} px ({self.interpolation})"
            geometry = f"{resize}, centre crop {self.crop_size} px"
        return f"{geometry}, normalise with mean {numbers[0]} and std {numbers[1]}"

    def at_resolution(self, resolution: int) -> Preprocessing:
        """The same preprocessing giving ``resolution`` pixels square; the crop keeps its share of the
        image (a detector's own transform sizes its input: unchanged)."""
        if self.whole_image:
            return self
        if self.window is not None:
            return replace(self, resize_size=resolution, crop_size=resolution, window=(resolution, resolution))
        scale = self.resize_size / self.crop_size
        return replace(self, resize_size=round(resolution * scale), crop_size=resolution)

    def batchable(self) -> Preprocessing:
        """The same preprocessing giving one size for every image, for batches of images of many
        sizes: a detector's is its short side, centre-cropped square, as 0..1 pixels."""
        return replace(self, whole_image=False)

    def picture(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The uint8 RGB (H, W, 3) picture the model's input shows, for overlays: an fmw
        checkpoint's centre window before resizing, the whole image for a detector, else the pixels."""
        rgb = np.asarray(image)
        if self.whole_image:
            return rgb
        if self.window is not None:
            return np.ascontiguousarray(center_crop(rgb, aspect=self.window[1] / self.window[0]))
        return np.ascontiguousarray(self.pixels(image).permute(1, 2, 0).numpy())

    def pixels(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """An RGB image (PIL, or uint8 (H, W, 3)) as uint8 (3, H, W) pixels, before normalisation."""
        if self.window is not None:
            height, width = self.window
            window = Image.fromarray(self.picture(image))
            resized = window.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
            return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()
        pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
        if self.whole_image:
            return transforms.functional.pil_to_tensor(pil)
        interpolation = transforms.InterpolationMode(self.interpolation)
        resized = transforms.functional.resize(pil, [self.resize_size], interpolation=interpolation, antialias=True)
        return transforms.functional.pil_to_tensor(transforms.functional.center_crop(resized, [self.crop_size]))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) pixels as the model takes them: float32, normalised (a detector's: 0..1)."""
        if self.whole_image:
            channels = pixels.shape[1]
            return normalize(pixels, (0.0,) * channels, (1.0,) * channels)
        return normalize(pixels, self.mean, self.std)

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """An RGB image (PIL, or uint8 (H, W, 3)) as a (1, 3, H, W) float32 batch the model takes."""
        return self.normalise(self.pixels(image).unsqueeze(0))
