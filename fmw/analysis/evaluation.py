"""Accuracy of a model on a split: top-1, per class and the confusion matrix, and the same with the
weighting switched off (every gate replaced by 1) to show how much the model relies on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fmw.errors import DataError
from fmw.io import ImageSplit, LoadedCheckpoint, load_checkpoint, load_split
from fmw.sites import override_gates


@dataclass
class Accuracy:
    top1: float
    per_class: list[float]
    confusion: list[list[int]]

    @classmethod
    def from_predictions(cls, predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> Accuracy:
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

    def summary(self) -> dict[str, float | str]:
        result: dict[str, float | str] = {"test_top1": round(self.weighting_on.top1, 4), "test_images": self.images}
        if self.views != "single":
            result["views"] = self.views
        if self.weighting_off is not None:
            result["test_top1_weighting_off"] = round(self.weighting_off.top1, 4)
        return result

    def to_json(self) -> dict:
        def part(accuracy: Accuracy | None) -> dict[str, object] | None:
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
    from fmw.analysis.prediction import predict

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
    ``views`` other than "single" average several views of each image (``fmw.analysis.prediction.view_logits``)."""
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
