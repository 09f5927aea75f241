"""``fmw info``: a checkpoint's metadata and cost, any model's task, classes, preprocessing and cost,
or the weighting kinds' overheads."""

from __future__ import annotations

import argparse
import sys

from fmw.analysis import model_card
from fmw.analysis.costs import describe_checkpoint, overhead_table
from fmw.cli.models import open_models
from fmw.cli.options import add_model_arguments, model_options_from_args
from fmw.errors import FMWError
from fmw.io import load_checkpoint


def _describe_models(args: argparse.Namespace) -> int:
    models, errors = open_models(
        ([args.checkpoint] if args.checkpoint else []) + args.models, model_options_from_args(args)
    )
    for name, model in models.items():
        if model.checkpoint is not None:
            print(describe_checkpoint(model.source, model.checkpoint))
            continue
        card = model_card(model, name)
        height, width = card.input_size
        names = ", ".join(model.class_names[:6]) + (", ..." if len(model.class_names) > 6 else "")
        print(f"{name}: {model.source}")
        print(f"  task {model.task}; {len(model.class_names)} classes{f' ({names})' if names else ''}")
        print(f"  input {height}x{width} px; preprocessing: {model.preprocessing.describe()}")
        print(f"  parameters {card.parameters:,}, multiply-adds {card.multiply_adds:,}, weighting {card.weighting}\n")
    for message in errors:
        print(f"fmw info: {message}", file=sys.stderr)
    return 2 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fmw info",
        description="Show a checkpoint's metadata and cost, or the weighting kinds' overheads (--overhead).",
    )
    parser.add_argument("checkpoint", nargs="?", help="an fmw .safetensors checkpoint (or give --model SPEC)")
    add_model_arguments(parser)
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="print a markdown table of each weighting kind's parameters and multiply-adds over 'none'",
    )
    args = parser.parse_args(argv)
    if (args.checkpoint is None and not args.models) == (not args.overhead):
        parser.error("give either a CHECKPOINT or --overhead (or --model SPEC instead of CHECKPOINT)")
    if args.overhead:
        print(overhead_table())
        return 0
    if args.models:
        return _describe_models(args)
    try:
        loaded = load_checkpoint(args.checkpoint)
    except (FMWError, OSError) as error:
        print(f"fmw info: {error}", file=sys.stderr)
        return 2
    print(describe_checkpoint(loaded.source, loaded.metadata))
    return 0
