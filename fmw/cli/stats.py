"""``fmw stats``: per-site, per-class gate statistics of a model over an image folder or a dataset
split, as JSON and optionally an HTML page; under ``torchrun`` every process reads its own share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmw.analysis.findings import statistics_json
from fmw.analysis.streaming import folder_gate_statistics
from fmw.cli.models import describe
from fmw.cli.options import add_data_options, add_model_options, add_reading_options, model_and_images
from fmw.errors import FMWError
from fmw.export import write_page
from fmw.export.statistics import statistics_sections


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fmw stats", description=__doc__.split("\n")[0])
    add_model_options(parser)
    add_data_options(parser)
    add_reading_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="write the statistics as JSON here")
    parser.add_argument(
        "--digits", type=int, default=None, help="round every number to N significant digits and write compact JSON"
    )
    parser.add_argument("--html", type=Path, default=None, help="also write a page of figures here")
    args = parser.parse_args(argv)
    try:
        with model_and_images(args) as run:
            statistics, reading = folder_gate_statistics(run.loaded, run.images, run.labels, run.options)
            if run.rank == 0:
                checkpoint = Path(run.name) if run.loaded.checkpoint is not None else None
                args.out.write_text(statistics_json(statistics, checkpoint=checkpoint, digits=args.digits))
                if args.html is not None:
                    label = checkpoint.stem if checkpoint is not None else run.name
                    title = f"Gate statistics: {checkpoint.name if checkpoint else run.name} on {statistics.source}"
                    write_page(args.html, title, statistics_sections(statistics, label))
    except (FMWError, ValueError, OSError) as error:
        print(f"fmw stats: {error}", file=sys.stderr)
        return 2
    if run.rank != 0:
        return 0
    print(f"{run.name} ({describe(run.loaded)}) on {statistics.source}: {statistics.images} images")
    print(f"classes: {run.labels.reason}")
    print(f"{'site':<24}{'kind':<9}{'specificity':>12}")
    for site in statistics.sites:
        value = "-" if site.specificity is None else f"{site.specificity:.3f}"
        print(f"{site.name:<24}{site.kind:<9}{value:>12}")
    print("\n".join(reading.lines()))
    print(f"wrote {args.out}" + (f" and {args.html}" if args.html else ""))
    return 0
