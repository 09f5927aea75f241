"""The ``fmw`` command line (also ``python -m fmw``): maps a command name to the module under
``fmw.cli`` that parses its arguments and calls the library; an ``FMWError`` becomes one message.

Its commands are batch jobs that exit when done, so they run with glibc keeping freed memory for
reuse (``fmw.memory.keep_freed_memory``: no fresh zeroed pages for every large batch);
``FMW_KEEP_FREED_MEMORY=0`` opts out. ``fmw dashboard`` becomes the Streamlit server instead, which
keeps the default allocator (a long-lived process would hold its largest analysis's memory).
"""

from __future__ import annotations

import importlib
import os
import sys

import fmw.memory
from fmw.errors import FMWError

COMMANDS = {
    "train": ("fmw.cli.train", "train a network of the fmw family and write a checkpoint"),
    "evaluate": ("fmw.cli.evaluate", "measure a model: top-1, per class, confusion, weighting switched off"),
    "cards": ("fmw.cli.cards", "print the model-card table of a directory of checkpoints"),
    "info": ("fmw.cli.info", "show a checkpoint's metadata, or the family's parameter and multiply-add overheads"),
    "stats": ("fmw.cli.stats", "per-site, per-class gate statistics over a dataset split or any image folder"),
    "report": ("fmw.cli.report", "write one self-contained HTML report for images and checkpoints"),
    "inspect": ("fmw.cli.inspect", "list a model's weighting sites: name, kind, stages, channels, map size"),
    "dashboard": ("fmw.cli.dashboard", "start the Streamlit dashboard (arguments pass through to `streamlit run`)"),
}


def usage() -> str:
    lines = ["usage: fmw <command> [options]   (or: python -m fmw <command> ...)", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "fmw <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command != "dashboard" and fmw.memory.keep_freed_memory_wanted():
        fmw.memory.keep_freed_memory()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        code: int = module.main(rest)
    except FMWError as error:
        print(f"fmw {command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (``fmw cards | head``): not an error of fmw's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting flushes nowhere
        return 1
    return code
