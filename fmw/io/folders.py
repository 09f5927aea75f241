"""Image folders read one image at a time: an ImageFolder layout (one folder per class, images of any
size and format) in a directory or a .zip, listed once and decoded in ``DataLoader`` workers, with
unreadable files handed back as such instead of raised."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import torch
from PIL import Image
from torch.utils.data import Dataset

from fmw.errors import DataError
from fmw.io.datasets import IMAGE_SUFFIXES, ImageSplit, jpeg_roundtrip

__all__ = [
    "UNREADABLE",
    "FolderImages",
    "ImageBatch",
    "ImageFolder",
    "Sample",
    "SplitImages",
    "collate_images",
    "open_image_folder",
]

# What decoding a damaged or foreign file raises (PIL signals a broken PNG with SyntaxError, a short
# read with struct.error or EOFError, a damaged zip member with BadZipFile or zlib.error).
UNREADABLE: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
    Image.DecompressionBombError,
)

Transform = Callable[[Image.Image], torch.Tensor]
Sample = tuple[torch.Tensor | None, int, str, str]
"""One read image: uint8 pixels (3, H, W) or None when unreadable, its label, its name, and the
reason it could not be read ("" when it could)."""


def _is_image(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageFolder:
    """The images of an ImageFolder layout: ``files`` (relative to ``location``, POSIX separators)
    sorted by class folder, then by name, with their ``labels`` (index into ``class_names``, the
    folder names sorted). ``location`` is a directory or a .zip archive."""

    location: Path
    is_zip: bool
    class_names: list[str]
    files: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, count: int) -> ImageFolder:
        """The first ``count`` images of every class, in class order (as ``ImageSplit.subset``)."""
        taken = [0] * len(self.class_names)
        keep = []
        for index, label in enumerate(self.labels):
            if taken[label] < count:
                taken[label] += 1
                keep.append(index)
        return replace(
            self,
            files=[self.files[i] for i in keep],
            labels=[self.labels[i] for i in keep],
            source=f"{self.source} (first {count} per class)",
        )


def _no_images(source: str, layout: str) -> DataError:
    return DataError(
        f"{source}: no images in class folders; expected an ImageFolder layout ({layout}) "
        f"of files ending in {', '.join(sorted(IMAGE_SUFFIXES))}"
    )


def _grouped(names: Sequence[str], source: str, layout: str) -> tuple[list[str], list[str], list[int]]:
    """Class names, files and labels from relative names whose first part is the class folder."""
    by_class: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) >= 2 and not parts[0].startswith(".") and _is_image(name):
            by_class.setdefault(parts[0], []).append(name)
    if not by_class:
        raise _no_images(source, layout)
    class_names = sorted(by_class)
    files = [name for class_name in class_names for name in sorted(by_class[class_name])]
    labels = [label for label, class_name in enumerate(class_names) for _ in by_class[class_name]]
    return class_names, files, labels


def _directory_folder(path: Path, split: str) -> ImageFolder:
    """``path/split/<class>/`` when that holds class folders with images, else ``path/<class>/``."""
    layout = f"{path}/<class>/*.jpg or {path}/{split}/<class>/*.jpg"
    for root in (path / split, path):
        if not root.is_dir():
            continue
        names = []
        for top, folders, files in os.walk(root, followlinks=True):
            folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
            relative = Path(top).relative_to(root).as_posix()
            if relative != ".":
                names += [f"{relative}/{file}" for file in files]
        if any(len(name.split("/")) >= 2 and _is_image(name) for name in names):
            class_names, files, labels = _grouped(names, str(root), layout)
            return ImageFolder(root, False, class_names, files, labels, str(root))
    raise _no_images(str(path), layout)


def _zip_folder(path: Path, split: str) -> ImageFolder:
    """Members ``split/<class>/...`` when there are any, else ``<class>/...``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a readable zip archive ({error})") from None
    prefix = f"{split}/"
    inside = [name[len(prefix) :] for name in names if name.startswith(prefix)]
    layout = f"<class>/*.jpg or {split}/<class>/*.jpg inside the archive"
    if any(len(name.split("/")) >= 2 and _is_image(name) for name in inside):
        class_names, files, labels = _grouped(inside, f"{path}:{split}", layout)
        return ImageFolder(path, True, class_names, [prefix + name for name in files], labels, f"{path}:{split}")
    class_names, files, labels = _grouped(names, str(path), layout)
    return ImageFolder(path, True, class_names, files, labels, str(path))


def open_image_folder(source: str | Path, split: str = "test") -> ImageFolder:
    """List the images of ``source``: a directory or .zip in ImageFolder layout, either
    ``<class>/<image>`` (e.g. ImageNet's validation folder) or ``<split>/<class>/<image>`` (the
    CIFAR-10 zip). Images below a class folder's subfolders belong to that class."""
    if not split or "/" in split or split in {".", ".."}:
        raise DataError(f"split must be a folder name such as 'test' or 'val', got {split!r}")
    path = Path(source).expanduser()
    if path.is_dir():
        return _directory_folder(path, split)
    if path.is_file():
        return _zip_folder(path, split)
    raise DataError(f"{path}: no such file or directory; pass a directory or .zip in ImageFolder layout")


def _reason(error: BaseException) -> str:
    """Why a file could not be read, in one line."""
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image format PIL can decode"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


class _Images(Dataset[Sample]):
    """Images decoded to RGB one at a time, optionally JPEG re-encoded, then ``transform`` (a PIL
    image -> uint8 (3, H, W) tensor); an image that cannot be read comes back as None with the reason."""

    def __init__(self, labels: Sequence[int], transform: Transform, jpeg_quality: int | None) -> None:
        self.labels = labels
        self.transform = transform
        self.jpeg_quality = jpeg_quality

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, index: int) -> str:
        raise NotImplementedError

    def open(self, index: int) -> Image.Image:
        """Image ``index`` decoded to RGB."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's notes on odd palettes and EXIF, once per file
                image = self.open(index)
                if self.jpeg_quality is not None:
                    image = jpeg_roundtrip(image, self.jpeg_quality)
        except UNREADABLE as error:
            return None, self.labels[index], self.name(index), _reason(error)
        return self.transform(image), self.labels[index], self.name(index), ""


class FolderImages(_Images):
    """The images of an ``ImageFolder``. Every process opens the archive of a .zip folder itself, so
    ``DataLoader`` workers never share a file offset."""

    def __init__(self, folder: ImageFolder, transform: Transform, jpeg_quality: int | None = None) -> None:
        super().__init__(folder.labels, transform, jpeg_quality)
        self.folder = folder
        self._archive: tuple[int, zipfile.ZipFile] | None = None

    def name(self, index: int) -> str:
        return self.folder.files[index]

    def _read(self, index: int) -> bytes:
        if not self.folder.is_zip:
            return (self.folder.location / self.folder.files[index]).read_bytes()
        if self._archive is None or self._archive[0] != os.getpid():
            self._archive = (os.getpid(), zipfile.ZipFile(self.folder.location))
        return self._archive[1].read(self.folder.files[index])

    def open(self, index: int) -> Image.Image:
        with Image.open(io.BytesIO(self._read(index))) as opened:
            return opened.convert("RGB")

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_archive": None}  # an open archive does not travel to a spawned worker


class SplitImages(_Images):
    """The images of an in-memory ``ImageSplit`` (e.g. torchvision's CIFAR-10), read like a folder's."""

    def __init__(self, split: ImageSplit, transform: Transform, jpeg_quality: int | None = None) -> None:
        super().__init__(split.labels.tolist(), transform, jpeg_quality)
        self.split = split

    def name(self, index: int) -> str:
        return f"{self.split.source}[{index}]"

    def open(self, index: int) -> Image.Image:
        pixels = self.split.images[index].permute(1, 2, 0).numpy()
        return Image.fromarray(pixels.squeeze(2) if pixels.shape[2] == 1 else pixels).convert("RGB")


@dataclass
class ImageBatch:
    """The readable images of one batch, uint8 ``pixels`` (B, 3, H, W) with their ``labels``, and
    (name, reason) of those that could not be read; B may be 0."""

    pixels: torch.Tensor
    labels: torch.Tensor
    unreadable: list[tuple[str, str]]

    def pin_memory(self) -> ImageBatch:
        """Called by ``DataLoader(pin_memory=True)`` so that copies to the GPU can overlap."""
        return ImageBatch(self.pixels.pin_memory(), self.labels.pin_memory(), self.unreadable)


def collate_images(samples: list[Sample]) -> ImageBatch:
    """A ``DataLoader`` ``collate_fn`` for ``Sample`` lists: stacks the readable ones."""
    readable = [(pixels, label) for pixels, label, _, _ in samples if pixels is not None]
    unreadable = [(name, reason) for pixels, _, name, reason in samples if pixels is None]
    if not readable:
        return ImageBatch(torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), unreadable)
    pixels = torch.stack([pixels for pixels, _ in readable])
    return ImageBatch(pixels, torch.tensor([label for _, label in readable], dtype=torch.int64), unreadable)
