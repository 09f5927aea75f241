"""The example notebook runs in a real Jupyter kernel (nbclient + ipykernel) and shows what it says:
the shipped CBAM network's three sites, a user's squeeze-excitation found by computation, plotly
figures in the outputs, and a torchvision model's nine SE sites."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "inspect_any_model.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def executed() -> list[list[dict]]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]


def text(outputs: list[dict]) -> str:
    return "".join(output.get("text", "") for output in outputs if output.get("output_type") == "stream")


def html(outputs: list[dict]) -> str:
    return "".join(output.get("data", {}).get("text/html", "") for output in outputs)


def figures(outputs: list[dict]) -> list[dict]:
    return [output["data"][PLOTLY] for output in outputs if PLOTLY in output.get("data", {})]


def test_no_cell_raises(executed) -> None:
    errors = [output for outputs in executed for output in outputs if output.get("output_type") == "error"]
    assert errors == []


def test_the_inspection_shows_its_sites_and_a_site_figure(executed) -> None:
    shown = executed[0]
    assert "3 weighting site(s)" in html(shown) and "stages.0.weighting" in html(shown) and "cbam" in html(shown)
    (figure,) = figures(shown)
    assert figure["layout"]["title"]["text"].endswith("stages.0.weighting")


def test_site_names_predictions_and_a_figure_the_user_changed(executed) -> None:
    printed = text(executed[1]).splitlines()
    assert printed[0] == str([f"stages.{i}.weighting" for i in range(3)])
    predictions = json.loads(printed[1].replace("(", "[").replace(")", "]").replace("'", '"'))
    assert len(predictions) == 3 and all(0 <= p <= 1 for _, p in predictions)
    assert text(executed[2]).strip() == "CBAM's last channel gate on the cat 128"
    (figure,) = figures(executed[2])
    assert figure["layout"]["title"]["text"] == "CBAM's last channel gate on the cat"


def test_a_users_own_module_is_found_and_shown(executed) -> None:
    assert text(executed[3]).splitlines()[0] == "[('2', 'channel', ['channel'])]"
    assert "1 weighting site(s)" in html(executed[3]) and len(figures(executed[3])) == 1
    assert text(executed[4]).strip() == "3 rows: weighting on, site 2 off, all off"


def test_a_torchvision_model_by_name(executed) -> None:
    assert text(executed[5]).strip() == "9 ['channel']"
