"""``fmw cards``: print the model-card table of a directory of checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmw.analysis.cards import render
from fmw.errors import FMWError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fmw cards", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="directory of .safetensors checkpoints")
    parser.add_argument(
        "--seeds", type=Path, default=None, help="directory of same-recipe checkpoints with other seeds"
    )
    args = parser.parse_args(argv)
    try:
        print(render(args.directory, args.seeds), end="")
    except FMWError as error:
        print(f"fmw cards: {error}", file=sys.stderr)
        return 2
    return 0
