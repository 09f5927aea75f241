"""``fmw dashboard``: start the Streamlit dashboard; every argument after the command passes
through to ``streamlit run`` (e.g. ``fmw dashboard --server.port 8600``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from fmw.errors import FMWError


def app_path() -> Path:
    """The dashboard's entry script, found through the installed ``dashboard`` package."""
    spec = importlib.util.find_spec("dashboard.app")
    if spec is None or spec.origin is None:
        raise FMWError(
            "the dashboard is not installed next to fmw; install the project with its dashboard extra: "
            "pip install -e '.[dashboard]' (from the repository root)"
        )
    return Path(spec.origin)


def streamlit_command(arguments: list[str]) -> list[str]:
    """The command that runs the app under the current interpreter with ``arguments`` appended."""
    if importlib.util.find_spec("streamlit") is None:
        raise FMWError("streamlit is not installed; run: pip install 'streamlit>=1.45,<2' (or the [dashboard] extra)")
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), *arguments]


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        print(f"\nruns: {' '.join(streamlit_command(['...']))}")
        return 0
    return subprocess.call(streamlit_command(argv))
