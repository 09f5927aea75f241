"""Accuracy of a model on a split: top-1, per class and the confusion matrix, and the same with the
weighting switched off (every gate replaced by 1) to show how much the model relies on it. Image
folders of any size are measured by ``fmw.analysis.streaming.folder_accuracy`` into the same report."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fmw.io import ImageSplit
from fmw.sites import override_gates

CONFUSION_SHOWN = 20  # classes up to which ``AccuracyReport.table`` prints the confusion matrix


@dataclass
class Accuracy:
    top1: float
    per_class: list[float]
    confusion: list[list[int]]

    @classmethod
    def from_predictions(cls, predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> Accuracy:
        return cls.from_confusion(confusion_counts(predictions, labels, classes, classes))

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor) -> Accuracy:
        """From counts (K, K or K + 1): row = true class, column = predicted class (a last column
        for predictions outside the K classes)."""
        confusion = confusion.cpu().to(torch.int64)
        correct, totals = confusion.diagonal(), confusion.sum(1)
        return cls(
            top1=float(correct.sum()) / max(int(totals.sum()), 1),
            per_class=(correct / totals.clamp(min=1)).tolist(),
            confusion=confusion.tolist(),
        )


def confusion_counts(predictions: torch.Tensor, labels: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """(rows, columns) counts of (label, prediction) pairs, on the tensors' device."""
    flat = torch.bincount(labels * columns + predictions, minlength=rows * columns)
    return flat.view(rows, columns)


@dataclass
class AccuracyReport:
    class_names: list[str]
    images: int
    weighting_on: Accuracy
    weighting_off: Accuracy | None
    views: str = "single"
    other_column: bool = False  # the confusion matrix ends with a column for predictions of other classes

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
            "confusion_columns": [*self.class_names, *(["other classes"] if self.other_column else [])],
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
        if len(self.class_names) > CONFUSION_SHOWN:
            lines += ["", f"confusion matrix: {len(self.class_names)} classes, too many to print; see --json"]
            return "\n".join(lines)
        other = ", last: any other class of the model" if self.other_column else ""
        lines += ["", f"confusion (rows: true class, columns: predicted{other}):"]
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
