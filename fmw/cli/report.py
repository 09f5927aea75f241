"""``fmw report``: write one self-contained HTML report for images and models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmw.analysis.attribution import ATTRIBUTION_METHODS
from fmw.cli.models import describe, open_models
from fmw.cli.options import add_model_arguments, model_options_from_args
from fmw.device import select_device
from fmw.export import Section, write_page
from fmw.export.report import NO_ATTRIBUTION, report_sections


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments; the attribution choices and their help come from
    ``fmw.analysis.attribution.ATTRIBUTION_METHODS``."""
    parser = argparse.ArgumentParser(
        prog="fmw report",
        description=__doc__.split("\n")[0],
        epilog="exit status: 0 all reported, 1 page written with errors in it, 2 no page written",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="an fmw checkpoint (as --model PATH; repeatable)"
    )
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    input_methods = [method for method in ATTRIBUTION_METHODS.values() if not method.at_site]
    parser.add_argument(
        "--attribution",
        default="integrated_gradients",
        choices=[method.name for method in input_methods] + [NO_ATTRIBUTION],
        help="the input attribution drawn for the predicted class: "
        + "; ".join(f"{method.name}, {method.description}" for method in input_methods)
        + f"; {NO_ATTRIBUTION}, no attribution (default: %(default)s)",
    )
    stepped = [method.name for method in input_methods if method.stepped]
    parser.add_argument("--steps", type=int, default=32, help=f"integration steps for {', '.join(stepped)}")
    parser.add_argument("--resolution", type=int, default=None, help="analysis size in px (default: each model's)")
    parser.add_argument("--device", default=None)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    specs = [str(path) for path in args.checkpoint] + args.models
    if not specs:
        parser.error("give at least one model: --model SPEC (or --checkpoint PATH)")
    try:
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}")
        device = select_device(args.device)
    except ValueError as error:
        print(f"fmw report: {error}", file=sys.stderr)
        return 2
    checkpoints, load_errors = open_models(specs, model_options_from_args(args, device))
    loading = Section("Models", errors=load_errors)
    for message in loading.errors:
        print(f"fmw report: {message}", file=sys.stderr)
    if not checkpoints:
        print("fmw report: no model could be opened; no report written", file=sys.stderr)
        return 2
    loading.notes.append(", ".join(f"{name} ({describe(loaded)})" for name, loaded in checkpoints.items()))
    sections: list[Section] = []
    errors: list[str] = []
    for path in args.images:
        try:
            data = path.read_bytes()
        except OSError as error:
            message = f"{path}: cannot read the file ({error.strerror or error})"
            sections.append(Section(f"Image {path}", errors=[message]))
            errors.append(message)
            continue
        image_sections, image_errors = report_sections(
            [(str(path), data)],
            checkpoints,
            attribution=args.attribution,
            n_steps=args.steps,
            resolution=args.resolution,
        )
        sections += image_sections
        errors += image_errors
    for message in errors:
        print(f"fmw report: {message}", file=sys.stderr)
    try:
        write_page(args.out, "fmw report", [loading, *sections])
    except OSError as error:
        print(f"fmw report: cannot write {args.out}: {error}", file=sys.stderr)
        return 2
    failures = len(errors) + len(loading.errors)
    print(f"wrote {args.out}: {len(args.images)} image(s) x {len(checkpoints)} model(s), {failures} error(s)")
    return 1 if failures else 0
