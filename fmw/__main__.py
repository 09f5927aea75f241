"""Command line: ``python -m fmw <command> ...``; each command lives in its own module."""

from fmw.cli import main

raise SystemExit(main())
