"""Tasks (fmw.models.tasks): inferred from the output, checked when given, predictions per task,
weighting-off comparisons and attribution scores, on torchvision's segmenter and detector, a
YOLO-style model with and without its postprocess function, and hand-made outputs with known numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fmw
from fmw.analysis.attribution import attribute_input
from fmw.models.tasks import (
    TASKS,
    Detection,
    OtherOutput,
    Segmentation,
    TopK,
    check_task,
    infer_task,
    postprocessed,
    task_score,
)
from tests import tasks_models


@pytest.fixture(scope="module")
def outputs() -> dict[str, object]:
    torch.manual_seed(0)
    with torch.no_grad():
        return {
            "lraspp": tasks_models.lraspp()(torch.randn(1, 3, 64, 64)),
            "faster_rcnn": tasks_models.faster_rcnn()([torch.rand(3, 96, 128)]),
            "yolo": tasks_models.build().eval()(torch.randn(1, 3, 64, 64)),
            "dict": tasks_models.DictModel().eval()(torch.randn(1, 3, 8, 8)),
            "logits": torch.randn(2, 10),
        }


def test_the_task_is_inferred_from_the_output(outputs) -> None:
    inferred = {name: infer_task(output) for name, output in outputs.items()}
    assert inferred == {
        "lraspp": "segmentation",
        "faster_rcnn": "detection",
        "yolo": "other",
        "dict": "other",
        "logits": "classification",
    }
    assert infer_task(tasks_models.postprocess(outputs["yolo"])) == "detection"


def test_a_task_that_contradicts_the_output_says_what_to_do(outputs) -> None:
    assert check_task("segmentation", outputs["lraspp"]) == "segmentation"
    assert check_task("other", outputs["lraspp"]) == "other"  # any output may be shown as its structure
    expected = r"task 'detection'.*returned list of 3 \[tensor \(1, 8, 8, 8\).*--postprocess"
    with pytest.raises(fmw.FMWError, match=expected):
        check_task("detection", outputs["yolo"])
    with pytest.raises(fmw.FMWError, match=r"reads as 'segmentation'.*--task segmentation"):
        check_task("classification", outputs["lraspp"])
    with pytest.raises(fmw.FMWError, match="unknown task 'boxes'"):
        check_task("boxes", outputs["lraspp"])


def test_a_postprocess_that_raises_or_returns_the_wrong_structure_is_refused(outputs) -> None:
    boxes = postprocessed(tasks_models.postprocess, outputs["yolo"])
    assert boxes[0]["boxes"].shape == (8 * 8 + 4 * 4 + 2 * 2, 4)
    with pytest.raises(fmw.FMWError, match="raised RuntimeError: decoding failed on purpose"):
        postprocessed(tasks_models.raising_postprocess, outputs["yolo"])
    with pytest.raises(fmw.FMWError, match=r"returned dict \{boxes: tensor \(1, 8, 8, 8\)\}; it must return a list"):
        postprocessed(tasks_models.wrong_postprocess, outputs["yolo"])


def test_predictions_per_task(outputs) -> None:
    top = TASKS["classification"].predictions(outputs["logits"], 1, [f"c{i}" for i in range(10)], top_k=3)
    assert isinstance(top, TopK)
    expected = outputs["logits"][1].softmax(0).topk(3)
    assert [c[0] for c in top.classes] == expected.indices.tolist()
    assert [c[2] for c in top.classes] == pytest.approx(expected.values.tolist())

    segmentation = TASKS["segmentation"].predictions(outputs["lraspp"], 0, ["background"])
    assert isinstance(segmentation, Segmentation)
    mask = outputs["lraspp"]["out"][0].argmax(0).numpy()
    assert np.array_equal(segmentation.mask, mask)
    assert float(sum(share for _, _, share in segmentation.shares)) == pytest.approx(1.0)
    first, _, share = segmentation.shares[0]
    assert share == pytest.approx((mask == first).mean()) and share == max(s for _, _, s in segmentation.shares)

    found = outputs["faster_rcnn"][0]
    for threshold in (0.0, float(found["scores"].median())):
        detection = TASKS["detection"].predictions(outputs["faster_rcnn"], 0, [], threshold=threshold)
        assert isinstance(detection, Detection)
        assert len(detection.scores) == int((found["scores"] >= threshold).sum())
        assert list(detection.scores) == sorted(detection.scores, reverse=True)
    other = TASKS["other"].predictions(outputs["yolo"])
    assert isinstance(other, OtherOutput)
    assert other.shapes == [(1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]


def _boxes(*rows: tuple[float, float, float, float, int, float]) -> dict[str, torch.Tensor]:
    data = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": data[:, :4], "labels": data[:, 4].long(), "scores": data[:, 5]}


def test_weighting_off_comparisons_per_task_with_known_numbers() -> None:
    on = [_boxes((0, 0, 10, 10, 1, 0.9), (20, 20, 30, 30, 2, 0.8), (50, 50, 60, 60, 1, 0.7))]
    off = [_boxes((0, 0, 10, 10, 1, 0.6), (21, 20, 31, 30, 2, 0.9), (80, 80, 90, 90, 3, 0.5))]
    assert TASKS["detection"].compares(on, off) == {
        "boxes lost": 1,  # (50, 50, 60, 60)
        "boxes gained": 1,  # (80, 80, 90, 90)
        "boxes moved": 1,  # shifted by 1 px: IoU 90/110 = 0.82
        "mean score change": pytest.approx((-0.3 + 0.1) / 2),
    }
    logits_on = torch.zeros(1, 3, 2, 2)
    logits_on[0, 1, 0] = 1.0  # top row class 1, bottom row class 0
    logits_off = torch.zeros(1, 3, 2, 2)
    logits_off[0, 1] = 1.0  # every pixel class 1
    comparison = TASKS["segmentation"].compares({"out": logits_on}, {"out": logits_off})
    assert comparison == {"pixels changed": 0.5, "IoU class 0": 0.0, "IoU class 1": 0.5}
    other = TASKS["other"].compares([torch.ones(4), torch.ones(2)], [torch.ones(4) * 1.5, torch.ones(2)])
    assert other == {"tensor 0": pytest.approx(0.5), "tensor 1": 0.0}


def test_attribution_scores_per_task() -> None:
    torch.manual_seed(0)
    model = tasks_models.lraspp()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
    score = task_score("segmentation", reference)
    predicted = reference["out"].argmax(1)
    k = int(predicted.flatten().mode().values)
    expected = reference["out"][0, k][predicted[0] == k].sum()
    assert float(score(reference)[0, k]) == pytest.approx(float(expected), rel=1e-5)
    attribution = attribute_input(model, x, "saliency", target=k, score=score)
    assert attribution.attributions.shape == (1, 3, 64, 64) and np.abs(attribution.attributions).sum() > 0

    detector = tasks_models.faster_rcnn()
    images = [torch.rand(3, 96, 128)]
    with torch.no_grad():
        boxes = detector(images)
    box_score = task_score("detection", boxes, box=0)
    assert float(box_score(boxes)[0, 0]) == float(boxes[0]["scores"][0])
    attribution = attribute_input(detector, images, "saliency", target=0, score=box_score)
    assert attribution.attributions.shape == (1, 3, 96, 128) and np.abs(attribution.attributions).sum() > 0

    yolo = tasks_models.build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = yolo(x)
    assert torch.equal(task_score("other", maps, tensor=1)(maps)[:, 0], maps[1].flatten(1).sum(1))
    with pytest.raises(fmw.FMWError, match=r"returned list of 3 .*pass score="):
        attribute_input(yolo, x, "saliency")
