"""``fmw dashboard``: start the Streamlit dashboard on this machine only (127.0.0.1) unless told
otherwise. ``--model SPEC`` (repeatable, with the model options of every command) adds your
models to the sidebar beside the shipped checkpoints, as does an ``fmw-models.toml`` in the
working directory; every other argument passes through to ``streamlit run`` (e.g.
``fmw dashboard --server.port 8600``; ``--server.address 0.0.0.0`` shares it on the network, see
dashboard/README.md for what that exposes)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tomllib
from pathlib import Path

from fmw.cli.model_config import MODELS_VARIABLE, ModelEntry, entries_to_json
from fmw.cli.options import add_model_arguments, model_options_from_args
from fmw.errors import FMWError

LOCAL_ADDRESS = "127.0.0.1"
ADDRESS_OPTION = "--server.address"


def app_path() -> Path:
    """The dashboard's entry script, found through the installed ``dashboard`` package."""
    spec = importlib.util.find_spec("dashboard.app")
    if spec is None or spec.origin is None:
        raise FMWError(
            "the dashboard is not installed next to fmw; install fmw with its dashboard extra: "
            "pip install 'fmw[dashboard]' (or pip install -e '.[dashboard]' from the repository root)"
        )
    return Path(spec.origin)


def _names(arguments: list[str], option: str) -> bool:
    return any(argument == option or argument.startswith(f"{option}=") for argument in arguments)


def with_local_address(arguments: list[str]) -> list[str]:
    """``arguments`` with ``--server.address 127.0.0.1`` added unless they name an address themselves."""
    return arguments if _names(arguments, ADDRESS_OPTION) else [*arguments, ADDRESS_OPTION, LOCAL_ADDRESS]


def with_dashboard_settings(arguments: list[str]) -> list[str]:
    """``arguments`` with the dashboard's Streamlit settings (``dashboard/streamlit.toml``, installed
    with the package, so they hold from any working directory) added as options, each unless the
    arguments set it themselves."""
    settings = app_path().with_name("streamlit.toml")
    if not settings.is_file():
        return arguments
    added: list[str] = []
    for section, values in tomllib.loads(settings.read_text()).items():
        for key, value in values.items():
            option = f"--{section}.{key}"
            if not _names(arguments, option):
                added += [option, str(value).lower() if isinstance(value, bool) else str(value)]
    return [*added, *arguments]


def streamlit_command(arguments: list[str]) -> list[str]:
    """The command that runs the app under the current interpreter with ``arguments`` appended,
    bound to 127.0.0.1 unless they give ``--server.address``."""
    if importlib.util.find_spec("streamlit") is None:
        raise FMWError(
            "streamlit is not installed; run: pip install 'fmw[dashboard]' (or pip install 'streamlit>=1.67,<2')"
        )
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        *with_dashboard_settings(with_local_address(arguments)),
    ]


def model_entries(argv: list[str]) -> tuple[list[ModelEntry], list[str]]:
    """The models given with ``--model`` (each with the options given after it, up to the next
    ``--model``) and the arguments left for streamlit."""
    entries: list[ModelEntry] = []
    rest: list[str] = []
    parser = argparse.ArgumentParser(prog="fmw dashboard", add_help=False)
    add_model_arguments(parser)
    starts = [index for index, argument in enumerate(argv) if argument == "--model" or argument.startswith("--model=")]
    rest += argv[: starts[0]] if starts else argv
    ends = [*starts[1:], len(argv)] if starts else []
    for start, end in zip(starts, ends, strict=True):
        args, unknown = parser.parse_known_args(argv[start:end])
        rest += unknown
        entries += [ModelEntry(spec, model_options_from_args(args)) for spec in args.models]
    return entries, rest


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        print(f"\nruns: {' '.join(streamlit_command(['...']))}")
        return 0
    entries, rest = model_entries(argv)
    environment = dict(os.environ)
    if entries:
        environment[MODELS_VARIABLE] = entries_to_json(entries)
    command = streamlit_command(rest)
    os.execve(command[0], command, environment)  # become the server: stopping fmw dashboard stops it
