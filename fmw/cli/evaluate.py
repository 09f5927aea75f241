"""``fmw evaluate``: top-1, per-class accuracy and confusion matrix of a checkpoint, with and
without its weighting."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fmw.analysis.evaluation import accuracy_report, load_checkpoint_and_split
from fmw.cli.options import add_data_options
from fmw.device import select_device
from fmw.errors import FMWError


def main(argv: list[str]) -> int:
    from fmw.analysis.prediction import VIEWS

    parser = argparse.ArgumentParser(prog="fmw evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    add_data_options(parser)
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
        device = select_device(args.device)
        loaded, split = load_checkpoint_and_split(args.checkpoint, args.data, args.split, device)
        if args.jpeg_quality is not None:
            split = split.jpeg_reencoded(args.jpeg_quality)
    except (FMWError, ValueError) as error:
        print(f"fmw evaluate: {error}", file=sys.stderr)
        return 2
    model = loaded.model.to(memory_format=torch.channels_last)
    report = accuracy_report(
        model, split, loaded.metadata.mean, loaded.metadata.std, device, not args.no_ablation, args.views
    )
    views = "" if args.views == "single" else f", views averaged: {args.views}"
    print(f"{args.checkpoint} ({loaded.metadata.weighting}) on {split.source}: {len(split)} images{views}")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    print(json.dumps(report.summary()))
    return 0
