"""``Inspection.predictions()``, ``.prediction_figure()`` and ``.weighting_off()`` per task in a
notebook: a segmenter's mask and shares, a detector's boxes on the image it was given, a YOLO-style
model's raw output compared tensor by tensor; a classifier as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fmw
from fmw.analysis.ablation import compare_task_weighting_off
from fmw.models.tasks import Detection, OtherOutput, Segmentation
from tests import tasks_models
from tests.conftest import make_checkpoint

MODELS = Path(__file__).with_name("tasks_models.py")


def _photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)


def _table(figure) -> dict[str, list]:
    table = figure.data[0]
    return dict(zip(table.header.values, table.cells.values, strict=True))


def test_segmenter_predictions_mask_figure_and_weighting_off() -> None:
    torch.manual_seed(0)
    inspection = fmw.inspect(tasks_models.lraspp(), [_photo()], input_size=64)
    prediction = inspection.predictions()
    assert isinstance(prediction, Segmentation) and sum(share for _, _, share in prediction.shares) == pytest.approx(1)
    figure = inspection.prediction_figure()
    mask = next(trace for trace in figure.data if trace.name == "mask")
    assert np.asarray(mask.z).shape == (64, 64)
    assert [t.name for t in figure.data if t.type == "scatter"] == [f"{n} {s:.1%}" for _, n, s in prediction.shares]
    table = _table(inspection.weighting_off())
    assert table["switched off"][-1] == "all sites" and len(table["switched off"]) == 9 + 1
    expected = compare_task_weighting_off(inspection.model.model, inspection.inputs, "segmentation")
    assert table["pixels changed"] == [f"{row.changes['pixels changed']:.4g}" for row in expected.rows]


def test_detector_boxes_on_the_given_image_and_boxes_lost_gained_moved() -> None:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    detector = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=3
    )
    inspection = fmw.inspect(detector, [_photo()])
    prediction = inspection.predictions(threshold=0.0)
    assert isinstance(prediction, Detection) and len(prediction.scores) == 3
    figure = inspection.prediction_figure(threshold=0.0)
    assert figure.data[0].z.shape == (80, 100, 3), "the image as given, in its own coordinates"
    outlines = [trace for trace in figure.data if trace.type == "scatter"]
    for trace, (x1, y1, x2, y2) in zip(outlines, prediction.boxes, strict=True):
        assert list(trace.x) == [x1, x2, x2, x1, x1] and list(trace.y) == [y1, y1, y2, y2, y1]
    columns = _table(inspection.weighting_off(0))
    assert list(columns) == ["switched off", "boxes lost", "boxes gained", "boxes moved", "mean score change"]
    assert all(int(lost) == int(gained) for lost, gained in zip(columns["boxes lost"], columns["boxes gained"]))


def test_other_output_compared_per_tensor_and_a_classifier_as_before(tmp_path) -> None:
    raw = fmw.inspect(f"{MODELS}:build", [_photo()], input_size=64)
    other = raw.predictions()
    assert isinstance(other, OtherOutput) and other.shapes == [(1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]
    table = _table(raw.weighting_off())
    assert [name for name in table if name != "switched off"] == ["tensor 0", "tensor 1", "tensor 2"]
    assert all(float(value) >= 0 for value in table["tensor 2"])
    with pytest.raises(fmw.FMWError, match="only detection and segmentation"):
        raw.prediction_figure()
    shipped = fmw.inspect(str(make_checkpoint(tmp_path / "channel.safetensors", "channel", seed=1)), [_photo()])
    top = shipped.predictions(k=3)
    assert isinstance(top, list) and len(top) == 3 and top[0].probability >= top[-1].probability
    assert [bar.name for bar in shipped.weighting_off().data][:1]
