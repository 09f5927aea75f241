"""One model argument everywhere: model SPECs (checkpoint, torchvision:, timm:, file.py:FACTORY,
package.module:FACTORY) with weights, input size, mean/std and classes; every bad SPEC gets a
message, never a traceback; `fmw inspect` and `fmw report` on a user's own file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fmw.cli import main as fmw_main
from fmw.errors import CheckpointError, FMWError
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models import ModelHandle
from fmw.sites import probe

MY_MODEL = """
import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // 2, 1)
        self.fc2 = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x):
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * w


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.se = SqueezeExcite(8)
        self.head = nn.Linear(8 * 32 * 32, 3)  # a fixed-size head: needs 32 px inputs

    def forward(self, x):
        return self.head(self.se(torch.relu(self.conv(x))).flatten(1))


def build():
    return Net()


def broken():
    raise RuntimeError("this factory is broken")


def not_a_module():
    return 42


INSTANCE = Net()
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(MY_MODEL)
    return path


def test_a_factory_in_a_file_opens_with_defaults_said_in_the_help(user_file: Path) -> None:
    model = load_model(f"{user_file}:build", ModelOptions(input_size=32))
    assert isinstance(model, ModelHandle) and model.family == "user"
    assert model.class_names == ["class 0", "class 1", "class 2"] and model.input_size == (32, 32)
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)
    result = probe(model.model, torch.randn(2, 3, 32, 32))
    assert result.names == ["se"] and result.sites[0].kind == "channel"
    instance = load_model(f"{user_file}:INSTANCE", ModelOptions(input_size=32))
    assert type(instance.model).__name__ == "Net"


def test_weights_classes_and_checkpoint_dicts_are_applied(user_file: Path, tmp_path: Path) -> None:
    reference = load_model(f"{user_file}:build", ModelOptions(input_size=32, seed=5)).model
    state = {key: torch.randn_like(value) for key, value in reference.state_dict().items()}
    torch.save({"epoch": 3, "model_state_dict": state}, tmp_path / "trained.pth")
    save_file(state, str(tmp_path / "trained.safetensors"))
    (tmp_path / "classes.txt").write_text("cat\ndog\n\nbird\n")
    for weights in ("trained.pth", "trained.safetensors"):
        options = ModelOptions(weights=tmp_path / weights, input_size=32, classes=tmp_path / "classes.txt")
        model = load_model(f"{user_file}:build", options)
        assert isinstance(model, ModelHandle)
        assert model.class_names == ["cat", "dog", "bird"] and not model.random_weights
        for key, value in model.model.state_dict().items():
            assert torch.equal(value, state[key]), key


def test_a_module_path_factory_opens(user_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(user_file.parent))
    model = load_model("my_model:build", ModelOptions(input_size=32))
    assert isinstance(model, ModelHandle) and model.name == "build"
    sys.modules.pop("my_model", None)


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("{dir}/absent.py:build", {}, "absent.py: no such file"),
        ("{file}:missing", {}, "has no 'missing'; callables found there: .*build"),
        ("{file}:broken", {}, r"calling broken\(\) raised RuntimeError: this factory is broken"),
        ("{file}:not_a_module", {}, r"not_a_module\(\) returned a int, not an nn.Module"),
        ("{file}:build", {}, r"does not run on a 3x224x224 input .* give the input size"),
        ("no_such_package_xyz:build", {}, "cannot import module 'no_such_package_xyz'"),
        ("torchvision:", {}, "give the model's name after 'torchvision:'"),
        ("torchvision:resnet5O", {}, "did you mean: resnet50"),
        ("gibberish", {}, "not a model spec fmw knows; give one of: path/to/model.safetensors"),
        ("{dir}/absent.safetensors", {}, "absent.safetensors: no such file"),
    ],
)
def test_bad_specs_get_a_message(user_file: Path, spec: str, options: dict, message: str) -> None:
    spec = spec.format(dir=user_file.parent, file=user_file)
    with pytest.raises(FMWError, match=message):
        load_model(spec, ModelOptions(**options))


def test_weights_that_do_not_fit_list_the_mismatches_and_pickles_are_refused(user_file: Path, tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"do not fit .*missing keys.*shape mismatches: conv.weight"):
        load_model(f"{user_file}:build", ModelOptions(weights=tmp_path / "wrong.pth", input_size=32))
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(f"{user_file}:build", ModelOptions(weights=tmp_path / "evil.pth", input_size=32))
    assert not marker.exists()


def test_fmw_inspect_lists_the_sites_of_a_users_file(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fmw_main(["inspect", f"{user_file}:build", "--input-size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("build: ") and "1 weighting site(s) at 32x32 px input" in out[0]
    assert out[1].split() == ["site", "kind", "stages", "channels", "map"]
    assert out[3].split() == ["se", "channel", "channel", "8", "32x32"]


def test_fmw_inspect_says_what_went_wrong_and_exits_2(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fmw_main(["inspect", f"{user_file}:broken"]) == 2
    assert "this factory is broken" in capsys.readouterr().err


def test_fmw_inspect_on_a_model_without_weighting_says_what_it_looks_for(tmp_path: Path, capsys) -> None:
    path = tmp_path / "plain.py"
    path.write_text(
        "from torch import nn\n\n\ndef build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n"
    )
    assert fmw_main(["inspect", f"{path}:build", "--input-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "0 weighting site(s)" in out and "fmw found no feature-map weighting" in out


def test_fmw_report_with_a_users_model_and_weights(user_file: Path, tmp_path: Path) -> None:
    from PIL import Image

    reference = load_model(f"{user_file}:build", ModelOptions(input_size=32)).model
    torch.save(reference.state_dict(), tmp_path / "my.pth")
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (200, 80, 40)).save(photo)
    out = tmp_path / "report.html"
    arguments = ["report", str(photo), "--model", f"{user_file}:build", "--weights", str(tmp_path / "my.pth")]
    assert fmw_main([*arguments, "--input-size", "32", "--attribution", "saliency", "--out", str(out)]) == 0
    page = out.read_text()
    assert "build · se" in page and "weighting found: channel" in page


def test_dashboard_model_list_from_the_command_line_and_a_config_file(user_file: Path, tmp_path: Path) -> None:
    from fmw.cli.model_config import (
        CONFIG_FILE,
        MODELS_VARIABLE,
        ModelEntry,
        configured_models,
        entries_from_json,
        entries_to_json,
    )

    given = [ModelEntry(f"{user_file}:build", ModelOptions(input_size=32, mean=(0.5, 0.5, 0.5)))]
    assert entries_from_json(entries_to_json(given)) == given
    (tmp_path / CONFIG_FILE).write_text(
        '[[model]]\nspec = "my_model.py:build"\ninput_size = 32\nclasses = "classes.txt"\n\n'
        '[[model]]\nspec = "torchvision:mobilenet_v3_small"\nrandom_weights = true\n'
    )
    entries = configured_models({MODELS_VARIABLE: entries_to_json(given)}, tmp_path)
    assert [entry.spec for entry in entries] == [
        given[0].spec,
        f"{tmp_path}/my_model.py:build",
        "torchvision:mobilenet_v3_small",
    ]
    assert entries[1].options.classes == tmp_path / "classes.txt" and entries[2].options.random_weights
    assert configured_models({}, tmp_path / "nowhere") == []
    (tmp_path / CONFIG_FILE).write_text("[[model]]\nspec = 'x'\ncolour = 'red'\n")
    with pytest.raises(FMWError, match="unknown keys: colour"):
        configured_models({}, tmp_path)
    (tmp_path / CONFIG_FILE).write_text("[[model]\n")
    with pytest.raises(FMWError, match="cannot read it as TOML"):
        configured_models({}, tmp_path)
    with pytest.raises(FMWError, match="not valid JSON"):
        configured_models({MODELS_VARIABLE: "[{"}, tmp_path / "nowhere")
