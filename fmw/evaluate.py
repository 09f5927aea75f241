"""``python -m fmw evaluate``: top-1, per-class accuracy and confusion matrix of a checkpoint, and
the same with weighting switched off (every gate replaced by 1) to show how much it relies on it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fmw.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from fmw.data import DataError, ImageSplit, load_split
from fmw.device import select_device
from fmw.probe import override_gates

__all__ = ["Accuracy", "AccuracyReport", "measure", "accuracy_report", "load_checkpoint_and_split", "main"]


@dataclass
class Accuracy:
    top1: float
    per_class: list[float]
    confusion: list[list[int]]

    @classmethod
    def from_predictions(cls, predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> "Accuracy":
        confusion = torch.bincount(labels * classes + predictions, minlength=classes * classes).view(classes, classes)
        totals = confusion.sum(1).clamp(min=1)
        return cls(
            top1=(predictions == labels).float().mean().item(),
            per_class=(confusion.diagonal() / totals).tolist(),
            confusion=confusion.tolist(),
        )


@dataclass
class AccuracyReport:
    class_names: list[str]
    images: int
    weighting_on: Accuracy
    weighting_off: Accuracy | None
    views: str = "single"

    def summary(self) -> dict:
        result = {"test_top1": round(self.weighting_on.top1, 4), "test_images": self.images}
        if self.views != "single":
            result["views"] = self.views
        if self.weighting_off is not None:
            result["test_top1_weighting_off"] = round(self.weighting_off.top1, 4)
        return result

    def to_json(self) -> dict:
        def part(accuracy: Accuracy | None):
            if accuracy is None:
                return None
            return {
                "top1": accuracy.top1,
                "per_class": dict(zip(self.class_names, accuracy.per_class)),
                "confusion": accuracy.confusion,
            }

        return {
            "class_names": self.class_names,
            "images": self.images,
            "views": self.views,
            "weighting_on": part(self.weighting_on),
            "weighting_off": part(self.weighting_off),
        }

    def table(self) -> str:
        off = self.weighting_off
        lines = [f"{'class':<14}{'top-1':>8}{'gates=1':>9}", "-" * 31]
        for index, name in enumerate(self.class_names):
            cell = f"{off.per_class[index]:>9.4f}" if off else f"{'-':>9}"
            lines.append(f"{name:<14}{self.weighting_on.per_class[index]:>8.4f}{cell}")
        lines.append("-" * 31)
        cell = f"{off.top1:>9.4f}" if off else f"{'-':>9}"
        lines.append(f"{'all':<14}{self.weighting_on.top1:>8.4f}{cell}")
        lines += ["", "confusion (rows: true class, columns: predicted):"]
        lines += [" ".join(f"{v:>5}" for v in row) for row in self.weighting_on.confusion]
        return "\n".join(lines)


def measure(
    model: nn.Module,
    split: ImageSplit,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    views: str = "single",
) -> Accuracy:
    from fmw.train import predict

    predictions = predict(model, split, mean, std, device, views=views)
    return Accuracy.from_predictions(predictions, split.labels, len(split.class_names))


def accuracy_report(
    model: nn.Module,
    split: ImageSplit,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    ablate: bool = True,
    views: str = "single",
) -> AccuracyReport:
    """Accuracy of ``model`` on ``split``; with ``ablate``, also with every gate set to 1.
    ``views`` other than "single" average several views of each image (``fmw.train.view_logits``)."""
    weighting_on = measure(model, split, mean, std, device, views)
    weighting_off = None
    if ablate:
        with override_gates(model, value=1.0):
            weighting_off = measure(model, split, mean, std, device, views)
    return AccuracyReport(list(split.class_names), len(split), weighting_on, weighting_off, views)


def load_checkpoint_and_split(
    checkpoint: Path, data: str | None, split_name: str, device: torch.device
) -> tuple[LoadedCheckpoint, ImageSplit]:
    """A checkpoint and a dataset split, refusing a split whose classes differ from the checkpoint's."""
    loaded = load_checkpoint(checkpoint, device)
    split = load_split(data, split_name)
    if split.class_names != loaded.metadata.class_names:
        raise DataError(
            f"the dataset's classes {split.class_names} differ from the checkpoint's {loaded.metadata.class_names}; "
            "give the dataset the checkpoint was trained on"
        )
    return loaded, split


def main(argv: list[str]) -> int:
    from fmw.train import VIEWS

    parser = argparse.ArgumentParser(prog="python -m fmw evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default=None, help="zip/dir in ImageFolder layout or torchvision:DIR (default: the shared CIFAR-10 zip)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-ablation", action="store_true", help="skip the weighting-switched-off pass")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    parser.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                        help="re-encode every image as JPEG at quality Q (1-95) first: a compression-sensitivity probe")
    parser.add_argument("--views", default="single", choices=list(VIEWS),
                        help="single (default; the model cards' figures) or test-time augmentation as published "
                             "figures use it: mirror = image and mirror image averaged; mirror-translate = airbench's "
                             "(mirror, plus mirrored 1-pixel shifts)")
    args = parser.parse_args(argv)
    try:
        device = select_device(args.device)
        loaded, split = load_checkpoint_and_split(args.checkpoint, args.data, args.split, device)
        if args.jpeg_quality is not None:
            split = split.jpeg_reencoded(args.jpeg_quality)
    except (CheckpointError, DataError, ValueError) as error:
        print(f"fmw evaluate: {error}", file=sys.stderr)
        return 2
    model = loaded.model.to(memory_format=torch.channels_last)
    report = accuracy_report(model, split, loaded.metadata.mean, loaded.metadata.std, device, not args.no_ablation, args.views)
    views = "" if args.views == "single" else f", views averaged: {args.views}"
    print(f"{args.checkpoint} ({loaded.metadata.weighting}) on {split.source}: {len(split)} images{views}")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    print(json.dumps(report.summary()))
    return 0
