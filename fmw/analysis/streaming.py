"""Gate statistics and accuracy at dataset scale: images read through a ``DataLoader`` with worker
processes and each model's own preprocessing, accumulated per site, stage and class on the model's
device, so memory does not grow with the number of images; under ``torchrun`` every process reads
its own share and the accumulators are summed once at the end.

Every image reaches the model at one size, by the model's one preprocessing (the dashboard's too:
``fmw.models.preprocessing``). Workers hand back its uint8 pixels; its normalisation runs on the
model's device, so a GPU receives a quarter of the bytes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from fmw.analysis.distributed import all_gather_objects, all_reduce_sum, rank_and_world
from fmw.analysis.evaluation import Accuracy, AccuracyReport, confusion_counts
from fmw.analysis.images import class_names_of
from fmw.analysis.labels import LabelMatch
from fmw.analysis.prediction import view_logits
from fmw.analysis.stats import GateAccumulator, GateStatistics
from fmw.device import model_device
from fmw.errors import DataError
from fmw.io import ImageSplit, load_split
from fmw.io.datasets import check_jpeg_quality, default_dataset, jpeg_source
from fmw.io.folders import FolderImages, ImageBatch, ImageFolder, Sample, SplitImages, collate_images, open_image_folder
from fmw.models import ModelHandle, Preprocessing
from fmw.sites import override_gates, probe

__all__ = [
    "ImageReader",
    "ReadOptions",
    "ReadingReport",
    "default_workers",
    "folder_accuracy",
    "folder_gate_statistics",
    "open_images",
]

Images = ImageFolder | ImageSplit
"""What can be read: an image folder listed from disk or a zip, or a split already in memory."""

EXAMPLES = 5  # unreadable files named in the report


def default_workers(processes: int = 1) -> int:
    """Decoding workers per process: this machine's cores shared among the processes, 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 1) // max(processes, 1)))


@dataclass(frozen=True)
class ReadOptions:
    """How images are read: ``batch_size`` images per forward pass, ``workers`` decoding processes
    per process (None: ``default_workers``; 0: decode in this process), ``jpeg_quality`` to
    re-encode every image as JPEG first (a compression probe), ``progress`` for a bar with images/s."""

    batch_size: int = 128
    workers: int | None = None
    jpeg_quality: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {self.workers}")
        if self.jpeg_quality is not None:
            check_jpeg_quality(self.jpeg_quality)


@dataclass(frozen=True)
class ReadingReport:
    """What reading the images came to, over every process: the ``source`` (with any JPEG
    re-encoding), images used, files that could not be read (``unreadable``; the first few (name,
    reason) in ``examples``), seconds and processes."""

    source: str
    images: int
    unreadable: int
    examples: list[tuple[str, str]]
    seconds: float
    processes: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """The report for people: the rate, then the unreadable files, if any."""
        processes = f", {self.processes} processes" if self.processes > 1 else ""
        lines = [
            f"read {self.images} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s{processes})"
        ]
        if self.unreadable:
            named = "; ".join(f"{name} ({reason})" for name, reason in self.examples)
            more = f" and {self.unreadable - len(self.examples)} more" if self.unreadable > len(self.examples) else ""
            lines.append(f"skipped {self.unreadable} unreadable file(s): {named}{more}")
        return lines


def open_images(source: str | None, split: str = "test", limit: int | None = None) -> Images:
    """The images ``source`` names: ``torchvision:ROOT`` (torchvision's CIFAR-10, in memory), else a
    directory or .zip in ImageFolder layout (``open_image_folder``); None: the default
    dataset (``$FMW_DATA``, else CIFAR-10: ``fmw.io.datasets.default_dataset``). ``limit``: the first
    N images of each class."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    download = False
    if source is None:
        source, download = default_dataset("DIR (one folder of images per class) or a .zip of such folders")
    images: Images = (
        load_split(source, split, download=download)
        if source.startswith("torchvision:")
        else open_image_folder(source, split)
    )
    return images if limit is None else images.subset(limit)


class ImageReader:
    """Batches of one process's share of ``images`` (every ``world``-th image from its rank), as
    normalised inputs and labels on ``device`` (``batches``) by ``preprocessing`` at one size for
    every image (``Preprocessing.batchable``: a detector's images centre-cropped to its short side),
    read by a ``DataLoader`` with ``options.workers`` workers; ``report`` counts what was read and
    what could not be."""

    def __init__(
        self, images: Images, preprocessing: Preprocessing, options: ReadOptions, device: torch.device
    ) -> None:
        self.rank, self.world = rank_and_world()
        self.preprocessing, self.options, self.device = preprocessing.batchable(), options, device
        self.source = images.source
        dataset: Dataset[Sample]
        if isinstance(images, ImageFolder):
            dataset = FolderImages(images, self.preprocessing.pixels, options.jpeg_quality)
        else:
            dataset = SplitImages(images, self.preprocessing.pixels, options.jpeg_quality)
        self.share = Subset(dataset, range(self.rank, len(dataset), self.world))
        self.images, self.unreadable, self.seconds = 0, 0, 0.0
        self.examples: list[tuple[str, str]] = []

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = default_workers(self.world) if self.options.workers is None else self.options.workers
        loader = DataLoader(
            self.share,
            batch_size=self.options.batch_size,
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if workers else None,
        )
        bar = tqdm(
            total=len(self.share),
            unit="img",
            unit_scale=True,
            disable=not self.options.progress or self.rank != 0,
            file=sys.stderr,
            desc="images" if self.world == 1 else f"images (rank 0 of {self.world})",
        )
        started = time.perf_counter()
        batch: ImageBatch
        try:
            for batch in loader:
                self.unreadable += len(batch.unreadable)
                self.examples += batch.unreadable[: EXAMPLES - len(self.examples)]
                if len(batch.labels):
                    self.images += len(batch.labels)
                    pixels = batch.pixels.to(self.device, non_blocking=True)
                    labels = batch.labels.to(self.device, non_blocking=True)
                    yield self.preprocessing.normalise(pixels), labels
                bar.update(len(batch.labels) + len(batch.unreadable))
        finally:
            bar.close()
            self.seconds = time.perf_counter() - started

    def report(self) -> ReadingReport:
        """The report over every process (collective: every process calls it)."""
        counts = all_reduce_sum([torch.tensor([self.images, self.unreadable], dtype=torch.int64)])[0].tolist()
        examples = sorted(example for part in all_gather_objects(self.examples) for example in part)
        seconds = max(all_gather_objects(self.seconds))
        source = (
            self.source if self.options.jpeg_quality is None else jpeg_source(self.source, self.options.jpeg_quality)
        )
        return ReadingReport(source, counts[0], counts[1], examples[:EXAMPLES], seconds, self.world)


def _no_images(images: Images, report: ReadingReport) -> DataError:
    reasons = f" ({report.lines()[-1]})" if report.unreadable else ""
    return DataError(f"{images.source}: no readable images{reasons}; give a folder with at least one image a class")


def folder_gate_statistics(
    loaded: ModelHandle, images: Images, labels: LabelMatch, options: ReadOptions = ReadOptions()
) -> tuple[GateStatistics, ReadingReport]:
    """Gate statistics of ``loaded`` over ``images``, grouped by class folder: named by the model's
    classes and marked "label" when ``labels`` matched them, else "folder". Under torchrun each
    process reads its share and every process returns the statistics of all the images."""
    reader = ImageReader(images, loaded.preprocessing, options, model_device(loaded.model))
    accumulator = GateAccumulator(len(images.class_names))
    for inputs, groups in reader.batches():
        accumulator.add(probe(loaded.model, inputs, keep_on_device=True, maps=False), groups)
    accumulator.all_reduce()
    report = reader.report()
    if not report.images:
        raise _no_images(images, report)
    grouping = "label" if labels.matched else "folder"
    return accumulator.statistics(labels.names, grouping, report.source), report


def folder_accuracy(
    loaded: ModelHandle,
    images: Images,
    labels: LabelMatch,
    options: ReadOptions = ReadOptions(),
    *,
    ablate: bool = True,
    views: str = "single",
) -> tuple[AccuracyReport, ReadingReport]:
    """Top-1, per-class accuracy and the confusion matrix of ``loaded`` over ``images`` (counts only,
    so memory does not grow with the images), with ``ablate`` also with every gate set to 1, from
    the same batches. Needs class folders that ``labels`` matched to the model's classes; the
    confusion matrix gains a last column for predictions of classes without a folder."""
    if labels.model_index is None:
        raise DataError(f"cannot measure accuracy: {labels.reason}")
    model = loaded.model
    device = model_device(model)
    classes, folders = len(class_names_of(loaded)), len(labels.folders)
    to_folder = torch.full((classes,), folders, dtype=torch.int64)
    to_folder[torch.tensor(labels.model_index)] = torch.arange(folders)
    columns = folders + int(folders < classes)
    to_folder = to_folder.to(device)
    passes = {"on": torch.zeros(folders, columns, dtype=torch.int64, device=device)}
    if ablate:
        passes["off"] = torch.zeros_like(passes["on"])
    reader = ImageReader(images, loaded.preprocessing, options, device)
    with torch.no_grad():
        for inputs, groups in reader.batches():
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            for name, counts in passes.items():
                with override_gates(model, value=1.0) if name == "off" else nullcontext():
                    logits = view_logits(model, inputs, views)
                if logits.shape[1] != classes:
                    raise ValueError(f"the model gives {logits.shape[1]} outputs but has {classes} class names")
                counts += confusion_counts(to_folder[logits.argmax(1)], groups, folders, columns)
    summed = dict(zip(passes, all_reduce_sum(list(passes.values()))))
    report = reader.report()
    if not report.images:
        raise _no_images(images, report)
    weighting_off = Accuracy.from_confusion(summed["off"]) if ablate else None
    accuracy = AccuracyReport(
        labels.names, report.images, Accuracy.from_confusion(summed["on"]), weighting_off, views, columns > folders
    )
    return accuracy, report
