"""The command line and model SPECs with models that are not classifiers: a user's YOLO-style
factory (with and without --postprocess), torchvision's segmenter and detector from a factory,
--task checked against the output, the task and postprocess keys of fmw-models.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmw.cli import main as fmw_main
from fmw.cli.model_config import read_model_config
from fmw.errors import FMWError
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models import ModelHandle

MODELS = Path(__file__).with_name("tasks_models.py")


@pytest.mark.parametrize(
    ("factory", "options", "task", "classes"),
    [
        ("build", {}, "other", 0),
        ("build", {"postprocess": f"{MODELS}:postprocess"}, "detection", 0),
        ("lraspp", {}, "segmentation", 21),
        ("faster_rcnn", {}, "detection", 0),
        ("DictModel", {}, "other", 0),
        ("lraspp", {"task": "other"}, "other", 0),
    ],
)
def test_a_factory_may_return_any_model_and_its_task_is_inferred(factory, options, task, classes) -> None:
    model = load_model(f"{MODELS}:{factory}", ModelOptions(input_size=64, **options))
    assert isinstance(model, ModelHandle)
    assert model.task == task
    assert len(model.class_names) == classes
    assert (model.postprocess is not None) == ("postprocess" in options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "detection"}, r"given the task 'detection'.*returned list of 3.*--task other.*--postprocess"),
        ({"postprocess": f"{MODELS}:raising_postprocess"}, "raised RuntimeError: decoding failed on purpose"),
        ({"postprocess": f"{MODELS}:wrong_postprocess"}, r"returned dict \{boxes: .*\}; it must return a list"),
        ({"postprocess": f"{MODELS}:absent"}, "has no 'absent'"),
    ],
)
def test_a_contradicting_task_or_a_bad_postprocess_says_what_to_do(options, message) -> None:
    with pytest.raises(FMWError, match=message):
        load_model(f"{MODELS}:build", ModelOptions(input_size=64, **options))


def test_a_torchvision_classifier_refuses_another_task() -> None:
    with pytest.raises(FMWError, match="is a classification model, so --task segmentation contradicts"):
        load_model("torchvision:mobilenet_v3_small", ModelOptions(random_weights=True, task="segmentation"))


def test_fmw_inspect_lists_the_sites_and_task_of_a_detector_and_a_segmenter(capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{MODELS}:build"
    assert fmw_main(["inspect", spec, "--input-size", "64", "--postprocess", f"{MODELS}:postprocess"]) == 0
    out = capsys.readouterr().out
    assert "task: detection (after its postprocess function); 6 weighting site(s) at 64x64 px input" in out
    assert "neck.2.1" in out and "spatial" in out
    assert fmw_main(["inspect", f"{MODELS}:lraspp", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "task: segmentation; 9 weighting site(s)" in out and "classifier" in out
    assert fmw_main(["inspect", spec, "--input-size", "64", "--task", "detection"]) == 2
    assert "--postprocess FILE.py:FUNCTION" in capsys.readouterr().err


def test_fmw_models_toml_takes_task_and_postprocess(tmp_path: Path) -> None:
    (tmp_path / "yolo.py").write_text(MODELS.read_text())
    config = tmp_path / "fmw-models.toml"
    config.write_text('[[model]]\nspec = "yolo.py:build"\ninput_size = 64\npostprocess = "yolo.py:postprocess"\n')
    (entry,) = read_model_config(config)
    assert entry.options.postprocess == f"{tmp_path / 'yolo.py'}:postprocess"
    model = load_model(entry.spec, entry.options)
    assert isinstance(model, ModelHandle) and model.task == "detection"
    config.write_text('[[model]]\nspec = "yolo.py:build"\ntask = "boxes"\n')
    with pytest.raises(FMWError, match="unknown task 'boxes'; give one of: classification, segmentation, detection"):
        read_model_config(config)
