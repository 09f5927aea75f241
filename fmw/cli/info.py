"""``fmw info``: a checkpoint's metadata and cost, or the weighting kinds' overheads."""

from __future__ import annotations

import argparse
import sys

from fmw.analysis.costs import describe_checkpoint, overhead_table
from fmw.errors import FMWError
from fmw.io import load_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fmw info",
        description="Show a checkpoint's metadata and cost, or the weighting kinds' overheads (--overhead).",
    )
    parser.add_argument("checkpoint", nargs="?", help="an fmw .safetensors checkpoint")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="print a markdown table of each weighting kind's parameters and multiply-adds over 'none'",
    )
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (not args.overhead):
        parser.error("give either a CHECKPOINT or --overhead (exactly one of them)")
    if args.overhead:
        print(overhead_table())
        return 0
    try:
        loaded = load_checkpoint(args.checkpoint)
    except (FMWError, OSError) as error:
        print(f"fmw info: {error}", file=sys.stderr)
        return 2
    print(describe_checkpoint(loaded.source, loaded.metadata))
    return 0
