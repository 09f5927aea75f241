"""``fmw report``, ``fmw stats`` and ``fmw evaluate`` with torchvision's detector and segmenter
(random weights): the report shows each one's predictions as its task reads them and its sites,
statistics group the gates by folder, evaluate says in words that it measures classifiers only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmw.analysis import analyse_image
from fmw.cli import main as fmw_main
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models.tasks import Detection, Segmentation

DETECTOR = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
SEGMENTER = "torchvision:lraspp_mobilenet_v3_large"
OPTIONS = ["--random-weights", "--input-size", "160"]


@pytest.fixture(autouse=True)
def no_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))


def _save(path: Path, height: int, width: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_analyse_image_gives_each_task_its_prediction_and_a_detector_its_padded_view() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    detector = load_model(DETECTOR, ModelOptions(random_weights=True, input_size=160))
    analysis = analyse_image(detector, rgb)
    assert isinstance(analysis.task_prediction, Detection) and analysis.predictions == []
    assert analysis.crop.shape == (160, 288, 3) and analysis.resolution == (160, 288)
    assert len(analysis.sites) == 8 and analysis.sites[0].before.shape[1:] == (20, 36)
    segmenter = load_model(SEGMENTER, ModelOptions(random_weights=True, input_size=160))
    analysis = analyse_image(segmenter, rgb)
    assert isinstance(analysis.task_prediction, Segmentation) and analysis.task_prediction.mask.shape == (160, 160)
    assert sum(share for _, _, share in analysis.task_prediction.shares) == pytest.approx(1.0)


def test_fmw_report_shows_a_detector_and_a_segmenter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = _save(tmp_path / "photo.png", 120, 200, 0)
    out = tmp_path / "report.html"
    assert fmw_main(["report", str(photo), "--model", SEGMENTER, "--model", DETECTOR, *OPTIONS, "--out", str(out)]) == 0
    assert "1 image(s) x 2 model(s), 0 error(s)" in capsys.readouterr().out
    page = out.read_text()
    headings = re.findall(r"<h3>([^<]*)</h3>", page)
    assert headings[0].startswith("lraspp_mobilenet_v3_large (segmentation): ") and "% of the pixels" in headings[0]
    assert headings[1] == "fasterrcnn_mobilenet_v3_large_320_fpn (detection): no box scored 50% or more"
    assert page.count("no input attribution: the report attributes a classifier") == 2
    # each task's prediction is drawn too: the mask over the image the segmenter saw, with a legend
    # entry per predicted class, and the detector's boxes (none scored 50%) on the photo itself
    assert page.count("predicted classes over the image it saw") == 1
    assert page.count("boxes scoring 50% or more") == 1
    assert "backbone.body.15.block.2" in page and "classifier" in page


def test_fmw_stats_groups_a_detectors_and_a_segmenters_gates_by_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _save(data / "street" / "a.png", 120, 200, 1)
    _save(data / "field" / "b.png", 150, 100, 2)
    for spec, sites in ((DETECTOR, 8), (SEGMENTER, 9)):
        out = tmp_path / "stats.json"
        assert fmw_main(["stats", "--model", spec, *OPTIONS, "--data", str(data), "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "read 2 images" in printed and "wrote" in printed
        saved = json.loads(out.read_text())
        assert len(saved["sites"]) == sites
        assert saved["grouping"] == "folder" and sorted(saved["class_names"]) == ["field", "street"]


def test_fmw_evaluate_says_it_measures_classifiers_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _save(data / "street" / "a.png", 120, 200, 1)
    for spec, task in ((DETECTOR, "detection"), (SEGMENTER, "segmentation")):
        assert fmw_main(["evaluate", "--model", spec, *OPTIONS, "--data", str(data)]) == 2
        error = capsys.readouterr().err
        assert f"is a {task} model; fmw evaluate measures classification accuracy" in error
        assert "Use fmw stats for its gate statistics" in error and "Traceback" not in error
