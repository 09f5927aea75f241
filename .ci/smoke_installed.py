"""CI's check of fmw as a user installs it: run by the Python of a fresh virtual environment into
which the built wheel (not the source tree) was installed, from a folder outside the source tree.
Checks that the package comes from that environment, then the console script, a shipped checkpoint
by name, the notebook entry point and the dashboard (under Streamlit's AppTest) with its models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import skimage.data
from streamlit.testing.v1 import AppTest

import fmw
from fmw.io import shipped_names

SHIPPED = ["cbam", "channel", "coord", "eca", "none", "scale", "simam", "spatial"]


def run(*arguments: str) -> str:
    completed = subprocess.run(arguments, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed ({completed.returncode}):\n{completed.stderr}")
    return completed.stdout


def main() -> None:
    environment = Path(sys.prefix).resolve()
    package = Path(fmw.__file__).resolve()
    assert package.is_relative_to(environment), f"fmw imported from {package}, not from the wheel in {environment}"
    assert not (Path.cwd() / "fmw").exists(), "run this from outside the source tree"
    script = str(environment / "bin" / "fmw")

    assert "usage: fmw" in run(script, "--help")
    listed = run(script, "inspect", "cbam")
    assert "3 weighting site(s)" in listed and "stages.2.weighting" in listed, listed
    assert shipped_names() == SHIPPED, shipped_names()

    loaded = fmw.load_checkpoint("cbam")
    assert loaded.metadata.architecture.weighting == "cbam"
    inspection = fmw.inspect("eca", skimage.data.chelsea())
    assert len(inspection.site_names) == 3, inspection.site_names
    assert len(inspection.predictions(k=3)) == 3

    import dashboard

    app = AppTest.from_file(str(Path(dashboard.__file__).resolve().parent / "main.py"), default_timeout=180)
    app.run()
    assert not app.exception, [exception.message for exception in app.exception]
    models = next(box for box in app.multiselect if box.label == "Models to compare")
    # the options show labels; the selection is kept by unique keys, shown as their labels (.values)
    assert sorted(models.options) == SHIPPED and sorted(models.values) == SHIPPED, (models.options, models.values)
    columns = app.get("bidi_component")  # Compare's columns, drawn by the canvas component (its JS is package data)
    assert len(columns) == len(SHIPPED), len(columns)
    print(f"installed wheel OK: fmw {fmw.__version__} from {package.parent}; shipped: {', '.join(SHIPPED)}")


if __name__ == "__main__":
    main()
