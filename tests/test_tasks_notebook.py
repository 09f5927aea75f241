"""``fmw.inspect`` with a detector and a segmenter: the task inferred or given, predictions per task,
the notebook's table saying what was predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fmw
from fmw.models.tasks import Detection, OtherOutput, Segmentation
from tests import tasks_models

MODELS = Path(__file__).with_name("tasks_models.py")


def _photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)


def test_inspect_a_segmenter_module_shows_its_mask_and_shares() -> None:
    torch.manual_seed(0)
    inspection = fmw.inspect(tasks_models.lraspp(), [_photo()], input_size=64)
    assert inspection.task == "segmentation" and len(inspection.sites) == 9
    prediction = inspection.task_predictions()
    assert isinstance(prediction, Segmentation) and prediction.mask.shape == (64, 64)
    assert np.array_equal(prediction.mask, inspection.result.output["out"][0].argmax(0).numpy())
    assert "(segmentation) predicted: class " in inspection._repr_html_()


def test_inspect_a_yolo_spec_with_and_without_its_postprocess() -> None:
    spec = f"{MODELS}:build"
    raw = fmw.inspect(spec, [_photo()], input_size=64)
    other = raw.task_predictions()
    assert raw.task == "other" and isinstance(other, OtherOutput)
    assert other.shapes == [(1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]
    boxes = fmw.inspect(spec, [_photo()], input_size=64, postprocess=f"{MODELS}:postprocess")
    assert boxes.task == "detection" and [r.name for r in boxes.sites] == [r.name for r in raw.sites]
    detection = boxes.task_predictions(threshold=0.0)
    assert isinstance(detection, Detection) and detection.boxes.shape == (84, 4)
    expected = tasks_models.postprocess(boxes.result.output)[0]["scores"]
    assert np.allclose(np.sort(detection.scores), np.sort(expected.numpy()))
    with pytest.raises(fmw.FMWError, match="given the task 'segmentation'"):
        fmw.inspect(spec, [_photo()], input_size=64, task="segmentation")
