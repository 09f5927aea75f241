"""``fmw inspect``: list a model's weighting sites (name, kind, stages, channels, feature-map size)
as found by one forward pass at the given input size, and with ``--image`` what it predicts for
each image, as its task reads the output (top classes, classes' shares of the pixels, boxes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmw.analysis.inspection import format_site_table, site_rows
from fmw.cli.models import describe, open_models
from fmw.cli.options import add_model_arguments, model_options_from_args
from fmw.device import select_device
from fmw.errors import FMWError
from fmw.io.model_spec import SPEC_FORMS
from fmw.notebook import inspect


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fmw inspect", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("specs", nargs="*", metavar="SPEC", help=f"models to inspect ({SPEC_FORMS}); or --model")
    add_model_arguments(parser)
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps; or set FMW_DEVICE")
    parser.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        help="an image to predict (repeatable): top-5 classes, "
        "each class's share of the pixels, or the boxes scored --threshold or more",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="detection: the lowest box score shown (0.5)")
    args = parser.parse_intermixed_args(argv)
    specs = args.specs + args.models
    if not specs:
        parser.error("give at least one model SPEC")
    models, errors = open_models(specs, model_options_from_args(args, select_device(args.device)))
    for name, model in models.items():
        height, width = model.input_size
        rows = site_rows(model.model, (height, width), model.in_channels)
        print(f"{name}: {describe(model)}; {len(rows)} weighting site(s) at {height}x{width} px input")
        print(format_site_table(rows) + "\n")
        for image in args.image:
            try:
                prediction = inspect(model, [image]).task_predictions(threshold=args.threshold)
            except (FMWError, OSError) as error:
                errors.append(f"{image}: {error}")
                continue
            print(f"{image} ({prediction.task}): " + "; ".join(prediction.lines()[:10]) + "\n")
    for message in errors:
        print(f"fmw inspect: {message}", file=sys.stderr)
    return 2 if errors else 0
