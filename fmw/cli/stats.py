"""``fmw stats``: per-site, per-class gate statistics of a checkpoint over a dataset split, as JSON
and optionally an HTML page."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmw.analysis.evaluation import load_checkpoint_and_split
from fmw.analysis.stats import split_gate_statistics
from fmw.cli.options import add_data_options
from fmw.device import select_device
from fmw.errors import FMWError
from fmw.export import write_page
from fmw.export.statistics import statistics_sections


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fmw stats", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    add_data_options(parser)
    parser.add_argument("--limit", type=int, default=None, help="use at most N images per class (the first N of each)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True, help="write the statistics as JSON here")
    parser.add_argument("--html", type=Path, default=None, help="also write a page of figures here")
    args = parser.parse_args(argv)
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {args.limit}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        device = select_device(args.device)
        loaded, split = load_checkpoint_and_split(args.checkpoint, args.data, args.split, device)
        if args.limit is not None:
            split = split.subset(args.limit)
        metadata = loaded.metadata
        statistics = split_gate_statistics(loaded.model, split, metadata.mean, metadata.std, batch_size=args.batch_size)
        args.out.write_text(json.dumps(statistics.to_json(), indent=1))
        if args.html is not None:
            title = f"Gate statistics: {args.checkpoint.name} on {split.source}"
            write_page(args.html, title, statistics_sections(statistics, args.checkpoint.stem))
    except (FMWError, ValueError, OSError) as error:
        print(f"fmw stats: {error}", file=sys.stderr)
        return 2
    print(f"{args.checkpoint} ({metadata.weighting}) on {split.source}: {statistics.images} images")
    print(f"{'site':<24}{'kind':<9}{'specificity':>12}")
    for site in statistics.sites:
        value = "-" if site.specificity is None else f"{site.specificity:.3f}"
        print(f"{site.name:<24}{site.kind:<9}{value:>12}")
    print(f"wrote {args.out}" + (f" and {args.html}" if args.html else ""))
    return 0
