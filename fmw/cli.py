"""The ``python -m fmw`` dispatcher: maps a command name to the module that implements it."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("fmw.train", "train a network of the fmw family and write a checkpoint"),
    "evaluate": ("fmw.evaluate", "measure a checkpoint: top-1, per class, confusion, weighting switched off"),
    "cards": ("fmw.cards", "print the model-card table of a directory of checkpoints"),
    "info": ("fmw.info", "show a checkpoint's metadata, or the family's parameter and multiply-add overheads"),
    "stats": ("fmw.stats", "per-site, per-class gate statistics over a dataset split"),
    "report": ("fmw.report", "write one self-contained HTML report for images and checkpoints"),
}


def usage() -> str:
    lines = ["usage: python -m fmw <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "python -m fmw <command> --help shows a command's options."]
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
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)
