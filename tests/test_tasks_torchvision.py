"""torchvision's detectors and segmenters by name (``torchvision:NAME``): random weights with no
download of any kind, published weights read from the torch cache (the file torchvision would
fetch), class names from the weights' metadata, the task from the family, the image a detector
really saw and its boxes in the user's own coordinates; ``fmw inspect``, ``fmw info`` and
``fmw.inspect`` on each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection.roi_heads import RoIHeads

import fmw
from fmw.cli import main as fmw_main
from fmw.errors import ZooError
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models import ModelHandle, zoo
from fmw.models.tasks import Detection, Segmentation

DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
SEGMENTER = "lraspp_mobilenet_v3_large"


@pytest.fixture(autouse=True)
def no_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch cache in which any download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    return tmp_path / "torch"


def _open(name: str, input_size: int | None = None) -> ModelHandle:
    model = load_model(
        f"torchvision:{name}", ModelOptions(random_weights=True, allow_download=False, input_size=input_size)
    )
    assert isinstance(model, ModelHandle)
    return model


def test_every_detection_and_segmentation_model_is_known_with_its_task() -> None:
    tasks = zoo.torchvision_models()
    for name in (
        DETECTOR,
        "fasterrcnn_mobilenet_v3_large_fpn",
        "ssdlite320_mobilenet_v3_large",
        "retinanet_resnet50_fpn_v2",
    ):
        assert tasks[name] == "detection"
    for name in (SEGMENTER, "deeplabv3_mobilenet_v3_large", "fcn_resnet50"):
        assert tasks[name] == "segmentation"
    assert tasks["mobilenet_v3_small"] == "classification" and "fcn_resnet50" not in zoo.torchvision_classifiers()
    with pytest.raises(ZooError, match="did you mean: lraspp_mobilenet_v3_large"):
        zoo.load_torchvision_model("lraspp_mobilenet_v3_larg", weights="random")


def test_a_detector_with_random_weights_has_coco_classes_its_own_preprocessing_and_8_se_sites() -> None:
    model = _open(DETECTOR)
    assert model.task == "detection" and model.random_weights
    assert len(model.class_names) == 91 and model.class_names[:3] == ["__background__", "person", "bicycle"]
    assert model.class_names.count("N/A") == 10 and model.class_names[90] == "toothbrush"
    assert model.preprocessing.whole_image and model.input_size == (320, 320)
    assert model.preprocessing.describe().startswith(
        "the whole image as 0..1 pixels; the model resizes it (short side 320 px)"
    )
    result = fmw.probe(model.model, [torch.rand(3, 160, 200)])
    assert [site.name for site in result.sites] == [f"backbone.body.{i}.block.2" for i in (4, 5, 6, 11, 12, 13, 14, 15)]
    assert {site.kind for site in result.sites} == {"channel"}
    again = _open(DETECTOR)  # seeded: the same weights every time
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    )


def test_a_segmenter_with_random_weights_has_voc_classes_its_resize_and_mean_and_9_sites() -> None:
    model = _open(SEGMENTER, input_size=160)
    assert model.task == "segmentation" and len(model.class_names) == 21
    assert model.class_names[:2] == ["__background__", "aeroplane"] and model.class_names[-1] == "tvmonitor"
    assert model.input_size == (160, 160) and model.preprocessing.mean == (0.485, 0.456, 0.406)
    assert _open(SEGMENTER).preprocessing.crop_size == 520  # the weights' own resize, as a centre square
    result = fmw.probe(model.model, torch.rand(1, 3, 160, 160))
    assert len(result.sites) == 9 and result.sites[-1].name == "classifier"
    assert result.output["out"].shape == (1, 21, 160, 160)


def test_published_weights_are_read_from_the_cache_frozen_batch_norms_and_aux_heads_included(no_download: Path) -> None:
    """The files torchvision fetches: a detector's lacks num_batches_tracked (FrozenBatchNorm2d), a
    DeepLabV3's holds an auxiliary head; both load, and compute what the saved model computed."""
    detector = _open(DETECTOR).model
    state = {k: v for k, v in detector.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = zoo.cached_weights_path(DETECTOR)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    opened = zoo.load_torchvision_model(DETECTOR)
    assert not opened.random_weights and opened.task == "detection" and str(path) in opened.source
    image = [torch.rand(3, 120, 150)]
    with torch.no_grad():
        assert torch.equal(opened.model(image)[0]["scores"], detector(image)[0]["scores"])
    name = "deeplabv3_mobilenet_v3_large"
    segmenter = zoo._build_torchvision(name, aux_loss=True).eval()
    torch.save(segmenter.state_dict(), zoo.cached_weights_path(name))
    opened = zoo.load_torchvision_model(name)
    assert opened.model.aux_classifier is not None and opened.task == "segmentation"
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(opened.model(x)["out"], segmenter(x)["out"])


def test_missing_published_weights_say_which_and_what_to_do() -> None:
    with pytest.raises(ZooError) as error:
        load_model(f"torchvision:{DETECTOR}", ModelOptions(allow_download=False))
    message = str(error.value)
    assert message.startswith(f"COCO weights for {DETECTOR} are not in the torch cache (")
    assert "--random-weights" in message
    with pytest.raises(ZooError, match=f"COCO \\(VOC classes\\) weights for {SEGMENTER} are not in the torch cache"):
        load_model(f"torchvision:{SEGMENTER}", ModelOptions(allow_download=False))


def _photo(tmp_path: Path, height: int = 120, width: int = 200) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_a_detector_sees_its_own_resize_and_returns_boxes_in_the_users_coordinates(tmp_path: Path) -> None:
    model = _open(DETECTOR, input_size=160)
    heads = model.model.get_submodule("roi_heads")
    assert isinstance(heads, RoIHeads)
    heads.score_thresh = 0.0  # random weights score every class about 1/91: keep them all
    inspection = fmw.inspect(model, [_photo(tmp_path)])
    assert isinstance(inspection.inputs, list) and inspection.inputs[0].shape == (3, 120, 200)
    seen = zoo.seen_images(model.model, inspection.inputs)
    assert seen is not None and seen[0].size == (160, 266) and seen[0].scale == (160 / 120, 266 / 200)
    assert inspection.crops is not None
    crop = inspection.crops[0]
    assert crop.shape == (160, 288, 3) and not crop[:, 266:].any()  # padded to a multiple of 32, padding black
    first = inspection.sites[0]
    assert first.before.shape[2:] == (160 // 8, 288 // 8)  # the maps cover the padded image the model saw
    prediction = inspection.task_predictions(threshold=0.0)
    assert isinstance(prediction, Detection) and len(prediction.boxes) == 100
    boxes = prediction.boxes
    assert boxes[:, [0, 2]].max() <= 200 and boxes[:, [1, 3]].max() <= 120  # the user's 200x120 image, not 266x160
    assert boxes[:, 2].max() > 160  # and they span it
    assert set(prediction.names) <= set(model.class_names) - {"__background__"}


def test_fmw_inspect_and_info_say_task_classes_and_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _photo(tmp_path)
    common = ["--random-weights", "--input-size", "160", "--image", str(photo)]
    assert fmw_main(["inspect", f"torchvision:{DETECTOR}", f"torchvision:{SEGMENTER}", *common]) == 0
    out = capsys.readouterr().out
    assert "random initialisation (seed 0); task: detection; 8 weighting site(s) at 160x160 px input" in out
    assert f"{photo} (detection): no box scored 50% or more" in out
    assert "task: segmentation; 9 weighting site(s) at 160x160 px input" in out
    segmentation = fmw.inspect(_open(SEGMENTER, input_size=160), [photo]).task_predictions()
    assert isinstance(segmentation, Segmentation)
    assert f"{photo} (segmentation): " + "; ".join(segmentation.lines()) in out
    assert (
        fmw_main(
            ["info", "--model", f"torchvision:{DETECTOR}", "--model", f"torchvision:{SEGMENTER}", "--random-weights"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "task detection; 91 classes (__background__, person, bicycle, car, motorcycle, airplane, ...)" in out
    assert "task segmentation; 21 classes (__background__, aeroplane, bicycle, bird, boat, bottle, ...)" in out
    assert "input 520x520 px; preprocessing: resize the short side to 520 px (bilinear), centre crop 520 px" in out
    assert "weighting torchvision: channel" in out
