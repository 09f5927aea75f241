"""Options several commands share, declared once: the model (``--model SPEC`` and the options that shape
how it is opened, turned into ``fmw.io.model_spec.ModelOptions``), the dataset and its split, how
images are read, and the device."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from fmw.analysis import ModelHandle, class_names_of
from fmw.analysis.distributed import process_device, process_group
from fmw.analysis.labels import LabelMatch, match_labels
from fmw.analysis.streaming import Images, ReadOptions, open_images
from fmw.device import select_device
from fmw.errors import FMWError
from fmw.io import load_checkpoint
from fmw.io.model_spec import SPEC_FORMS, ModelOptions, load_model
from fmw.models.tasks import TASKS


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 0.485,0.456,0.406, got {text!r}") from None


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--model SPEC`` (repeatable) and the options that shape how each model is opened."""
    group = parser.add_argument_group("models", f"SPEC is one of: {SPEC_FORMS}")
    group.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="SPEC",
        required=required,
        help="a model to work on (repeat for several)",
    )
    group.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="a .safetensors, .pt or .pth state dict for FILE.py:FACTORY (or torchvision:NAME) "
        "models, read without running code (default: the model's own initialisation)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="torchvision/timm: seeded random weights instead of downloading published ones (torchvision's "
        "detectors and segmenters: their backbones' too)",
    )
    group.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="PX",
        help="input side in pixels (default: the weights' own; 224 for FILE.py:FACTORY models); for a "
        "detector, the short side its own transform resizes every image to",
    )
    group.add_argument(
        "--mean",
        type=_floats,
        default=None,
        help="normalisation mean per channel (default: the "
        "weights' own; ImageNet's 0.485,0.456,0.406 for FILE.py:FACTORY models)",
    )
    group.add_argument("--std", type=_floats, default=None, help="normalisation std per channel (default: as --mean)")
    group.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="a file with one class name a line (default: the weights' own; 'class 0', 'class 1', ...)",
    )
    group.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help="what the model's output means (default: inferred from it: logits (N, classes) -> classification, "
        "(N, classes, H, W) or {'out': ...} -> segmentation, a list of {boxes, labels, scores} -> detection)",
    )
    group.add_argument(
        "--postprocess",
        default=None,
        metavar="FILE.py:FUNCTION",
        help="for FILE.py:FACTORY models: a function turning the raw output (a YOLO head's maps) into a list of "
        "{boxes, labels, scores} per image (default: none; such a model is shown as 'other')",
    )


def model_options_from_args(args: argparse.Namespace, device: str | torch.device = "cpu") -> ModelOptions:
    return ModelOptions(
        weights=args.weights,
        random_weights=args.random_weights,
        input_size=args.input_size,
        mean=args.mean,
        std=args.std,
        classes=args.classes,
        device=device,
        task=args.task,
        postprocess=args.postprocess,
    )


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--split`` and ``--device`` as ``fmw evaluate`` and ``fmw stats`` take them."""
    parser.add_argument(
        "--data",
        default=None,
        help="a directory or .zip in ImageFolder layout, DIR/<class>/<image> (any size and format) or "
        "DIR/<split>/<class>/<image>; or torchvision:DIR (default: $FMW_DATA, else CIFAR-10, downloaded to "
        "~/.cache/fmw/cifar10 on first use)",
    )
    parser.add_argument(
        "--split",
        default="test",
        help="the split's folder, used when DATA holds one (default: test; e.g. val for ImageNet's layout)",
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps; or set FMW_DEVICE")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model: an fmw checkpoint as the first argument (as before), or ``--model SPEC`` with
    the options of ``add_model_arguments`` (torchvision, timm, the user's own code)."""
    parser.add_argument("checkpoint", type=Path, nargs="?", default=None, help="an fmw checkpoint (or use --model)")
    add_model_arguments(parser)


def add_reading_options(parser: argparse.ArgumentParser, batch_size: int = 128) -> None:
    """``--limit``, ``--batch-size``, ``--workers``, ``--no-progress``: how the images are read."""
    parser.add_argument("--limit", type=int, default=None, help="use at most N images per class (the first N of each)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per pass (default {batch_size})")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding worker processes per process (default: the CPU cores shared among the "
        "processes, at most 8; 0 decodes in the main process)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown when stderr is a terminal)")


def read_options(args: argparse.Namespace, jpeg_quality: int | None = None) -> ReadOptions:
    return ReadOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        jpeg_quality=jpeg_quality,
        progress=not args.no_progress and sys.stderr.isatty(),
    )


def open_model(args: argparse.Namespace, device: torch.device) -> tuple[str, ModelHandle]:
    """The one model the command works on, as (what the user called it, the model), on ``device``."""
    specs = [str(args.checkpoint)] if args.checkpoint is not None else []
    specs += args.models
    if len(specs) != 1:
        given = f"{len(specs)} were given ({', '.join(specs)})" if specs else "none was given"
        raise FMWError(f"give one model, an fmw checkpoint or --model SPEC; {given}")
    if args.checkpoint is not None:
        return specs[0], load_checkpoint(args.checkpoint, device).handle()
    return specs[0], load_model(specs[0], model_options_from_args(args, device))


@dataclass(frozen=True)
class Run:
    """What ``fmw stats`` and ``fmw evaluate`` work on: this process's ``rank``, the model (as the
    user ``name``d it), the images, how their folders match the model's classes, how to read them."""

    rank: int
    name: str
    loaded: ModelHandle
    images: Images
    labels: LabelMatch
    options: ReadOptions


@contextmanager
def model_and_images(args: argparse.Namespace, jpeg_quality: int | None = None) -> Iterator[Run]:
    """Within the block: the process group joined under torchrun, the model on this process's
    device, the images listed and their classes matched to the model's."""
    options = read_options(args, jpeg_quality)
    device = process_device(select_device(args.device))
    with process_group(device) as (rank, _):
        name, loaded = open_model(args, device)
        images = open_images(args.data, args.split, args.limit)
        yield Run(rank, name, loaded, images, match_labels(images.class_names, class_names_of(loaded)), options)
