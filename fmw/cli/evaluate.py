"""``fmw evaluate``: top-1, per-class accuracy and confusion matrix of a model over an image folder
or a dataset split, with and without its weighting; under ``torchrun`` every process reads its share.
Classifiers only: a detector or segmenter is refused with a message saying what to use instead."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fmw.analysis.images import task_of
from fmw.analysis.prediction import VIEWS
from fmw.analysis.streaming import folder_accuracy
from fmw.cli.models import describe
from fmw.cli.options import add_data_options, add_model_options, add_reading_options, model_and_images
from fmw.errors import FMWError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fmw evaluate", description=__doc__.split("\n")[0])
    add_model_options(parser)
    add_data_options(parser)
    add_reading_options(parser)
    parser.add_argument("--no-ablation", action="store_true", help="skip the weighting-switched-off pass")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        metavar="Q",
        help="re-encode every image as JPEG at quality Q (1-95) first: a compression-sensitivity probe",
    )
    parser.add_argument(
        "--views",
        default="single",
        choices=list(VIEWS),
        help="single (default; the model cards' figures) or test-time augmentation as published "
        "figures use it: mirror = image and mirror image averaged; mirror-translate = airbench's "
        "(mirror, plus mirrored 1-pixel shifts)",
    )
    args = parser.parse_args(argv)
    try:
        with model_and_images(args, jpeg_quality=args.jpeg_quality) as run:
            if task_of(run.loaded) != "classification":
                raise FMWError(
                    f"{run.name} is a {task_of(run.loaded)} model; fmw evaluate measures classification accuracy "
                    "(top-1 against class folders) and does not score boxes or masks. Use fmw stats for its gate "
                    "statistics, fmw inspect --image or fmw report for its predictions"
                )
            run.loaded.model.to(memory_format=torch.channels_last)
            report, reading = folder_accuracy(
                run.loaded, run.images, run.labels, run.options, ablate=not args.no_ablation, views=args.views
            )
            if args.json and run.rank == 0:
                full = {
                    "model": run.name,
                    "source": reading.source,
                    **report.to_json(),
                    "unreadable": reading.unreadable,
                }
                args.json.write_text(json.dumps(full, indent=2))
    except (FMWError, ValueError, OSError) as error:
        print(f"fmw evaluate: {error}", file=sys.stderr)
        return 2
    if run.rank != 0:
        return 0
    views = "" if args.views == "single" else f", views averaged: {args.views}"
    print(f"{run.name} ({describe(run.loaded)}) on {reading.source}: {report.images} images{views}")
    print(f"classes: {run.labels.reason}")
    print(report.table())
    print("\n".join(reading.lines()))
    print(json.dumps(report.summary()))
    return 0
