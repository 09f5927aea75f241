"""Datasets for training and evaluation: ImageFolder layouts in a .zip or a directory, and
torchvision's CIFAR-10, decoded once into uint8 tensors; augmentation runs on tensors."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fmw.errors import DataError
from fmw.models.preprocessing import normalize
from fmw.settings import DATA_VARIABLE, cache_directory, default_data_path

__all__ = [
    "CIFAR10_CLASSES",
    "DataError",
    "ImageSplit",
    "augment_batch",
    "batches",
    "default_cifar10_path",
    "load_split",
    "normalize",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class ImageSplit:
    """One split in memory: ``images`` uint8 (N, 3, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, count: int) -> ImageSplit:
        """The first ``count`` images of every class, in class order (a balanced subset)."""
        keep = torch.cat([torch.nonzero(self.labels == c).flatten()[:count] for c in range(len(self.class_names))])
        return ImageSplit(self.images[keep], self.labels[keep], self.class_names, f"{self.source} (subset)")

    def jpeg_reencoded(self, quality: int) -> ImageSplit:
        """Every image encoded once more as a baseline JPEG at ``quality`` (``jpeg_roundtrip``): a
        probe of how sensitive a model is to compression."""
        check_jpeg_quality(quality)
        if self.images.shape[1] not in (1, 3):
            raise ValueError(f"JPEG holds 1 or 3 channels; these images have {self.images.shape[1]}")
        decoded = []
        for pixels in self.images.permute(0, 2, 3, 1).numpy():
            image = jpeg_roundtrip(Image.fromarray(pixels.squeeze(2) if pixels.shape[2] == 1 else pixels), quality)
            decoded.append(np.asarray(image).reshape(pixels.shape))
        images = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()
        return ImageSplit(images, self.labels, self.class_names, jpeg_source(self.source, quality))


def check_jpeg_quality(quality: object) -> None:
    """Refuse anything but an integer JPEG quality from 1 to 95."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be an integer from 1 to 95, got {quality!r}")


def jpeg_source(source: str, quality: int) -> str:
    """How a source re-encoded at ``quality`` is named in reports."""
    return f"{source} (JPEG quality {quality})"


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """``image`` encoded once more as a baseline JPEG at ``quality`` (1-95, PIL's default 4:2:0
    chroma subsampling) and decoded."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def default_cifar10_path() -> Path | None:
    """The default dataset (``fmw.settings.default_data_path``: ``$FMW_DATA``, else the development
    set-up's shared CIFAR-10 JPEG zip, else torchvision's CIFAR-10 in fmw's cache folder), if it is
    there or can be fetched (a ``torchvision:DIR`` source)."""
    path = default_data_path()
    return path if path.exists() or str(path).startswith("torchvision:") else None


def default_dataset(instead: str) -> tuple[str, bool]:
    """``default_cifar10_path`` as a source, and whether it may be downloaded (True for the cache
    folder's torchvision CIFAR-10, the default on a user's machine); a ``DataError`` saying to pass
    ``--data`` + ``instead`` when the default is absent."""
    path = default_cifar10_path()
    if path is None:
        raise DataError(
            f"no dataset given and the default, {default_data_path()}, is absent; pass --data {instead}, "
            f"or set {DATA_VARIABLE}"
        )
    source = str(path)
    return source, source == f"torchvision:{cache_directory() / 'cifar10'}"


def _decode(data: bytes, name: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{name}: not a readable image ({error})") from None


def _collect(entries: list[tuple[str, str]], split: str, source: str) -> tuple[list[str], list[tuple[str, int]]]:
    """From (relative path, key) pairs, the class names and the (key, label) list of ``split``."""
    by_class: dict[str, list[str]] = {}
    for relative, key in entries:
        parts = relative.split("/")
        if len(parts) == 3 and parts[0] == split and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES:
            by_class.setdefault(parts[1], []).append(key)
    if not by_class:
        raise DataError(
            f"{source}: no images under '{split}/<class>/' (expected the ImageFolder layout "
            f"train/<class>/*.jpg and test/<class>/*.jpg)"
        )
    class_names = sorted(by_class)
    items = [(key, label) for label, name in enumerate(class_names) for key in sorted(by_class[name])]
    return class_names, items


def _stack(arrays: list[np.ndarray], labels: list[int], class_names: list[str], source: str) -> ImageSplit:
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise DataError(f"{source}: images have different sizes {sorted(shapes)[:3]}; pass image_size=(H, W)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(images, torch.tensor(labels, dtype=torch.int64), class_names, source)


def _load_zip(path: Path, split: str, size: tuple[int, int] | None) -> ImageSplit:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a readable zip archive ({error})") from None
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        class_names, items = _collect([(name, name) for name in names], split, str(path))
        arrays = [_decode(archive.read(key), f"{path}:{key}", size) for key, _ in items]
    return _stack(arrays, [label for _, label in items], class_names, f"{path}:{split}")


def _load_directory(path: Path, split: str, size: tuple[int, int] | None) -> ImageSplit:
    files = [p for p in (path / split).glob("*/*") if p.is_file()]
    entries = [(p.relative_to(path).as_posix(), str(p)) for p in files]
    class_names, items = _collect(entries, split, str(path))
    arrays = [_decode(Path(key).read_bytes(), key, size) for key, _ in items]
    return _stack(arrays, [label for _, label in items], class_names, f"{path}/{split}")


def _load_torchvision_cifar10(root: str, split: str, download: bool) -> ImageSplit:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(root=root or ".", train=split == "train", download=download)
    except RuntimeError as error:
        hint = "" if download else " Add --download to fetch it (needs internet), or pass a path to your own copy."
        raise DataError(f"torchvision CIFAR-10 at {root!r}: {error}.{hint}") from None
    except OSError as error:
        raise DataError(
            f"torchvision CIFAR-10 could not be downloaded to {root!r} ({error}): this needs internet. "
            f"Offline, pass --data PATH to a local copy (a zip or directory in ImageFolder layout), or set "
            f"{DATA_VARIABLE}"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(images, torch.tensor(dataset.targets), list(dataset.classes), f"torchvision-cifar10:{split}")


def load_split(
    source: str | Path | None, split: str = "train", image_size: tuple[int, int] | None = None, download: bool = False
) -> ImageSplit:
    """Load ``split`` ("train" or "test") into memory.

    ``source``: a .zip or directory in ImageFolder layout; ``torchvision:ROOT`` for torchvision's
    CIFAR-10 under ROOT (fetched when ``download``); None for the default (``default_dataset``).
    """
    if split not in {"train", "test"}:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if source is None:
        source, fetch = default_dataset(
            "PATH (a zip or directory with train/<class>/ and test/<class>/), --data torchvision:DIR --download"
        )
        download = download or fetch
    text = str(source)
    if text.startswith("torchvision:"):
        return _load_torchvision_cifar10(text.split(":", 1)[1], split, download)
    path = Path(text)
    if path.is_dir():
        return _load_directory(path, split, image_size)
    if path.is_file():
        return _load_zip(path, split, image_size)
    raise DataError(f"{path}: no such file or directory; pass a .zip or a directory in ImageFolder layout")


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, translate: int = 2, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Horizontal flip (random, or where the bool mask ``flip`` says) and random translation by
    up to ``translate`` pixels (reflect padding, then a random crop), for a whole float batch at
    once on tensors."""
    n, _, h, w = images.shape
    if flip is None:
        flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1).to(images.device), images.flip(3), images)
    if translate <= 0:
        return images
    padded = torch.nn.functional.pad(images, (translate,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * translate + 1, (2, n), generator=generator)
    out = torch.empty_like(images)
    for dy in range(2 * translate + 1):
        for dx in range(2 * translate + 1):
            chosen = torch.nonzero((shifts[0] == dy) & (shifts[1] == dx)).flatten()
            if len(chosen):
                out[chosen] = padded[chosen, :, dy : dy + h, dx : dx + w]
    return out


def batches(
    count: int, batch_size: int, generator: torch.Generator | None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Index tensors for one epoch: shuffled when ``generator`` is given, else in order."""
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
