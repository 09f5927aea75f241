"""One model handle for every model: an fmw checkpoint, a torchvision and a timm model and a user's
factory each open as a ``ModelHandle`` whose fields (task, classes, input size, preprocessing,
label, checkpoint metadata) answer what analysis asks, and each analyses an image the same way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import fmw
from fmw.analysis import ModelHandle, analyse_image, model_card
from fmw.errors import CheckpointError
from fmw.io import CheckpointMetadata, load_checkpoint, save_checkpoint
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models import Preprocessing, build_model, zoo
from fmw.models.user import IMAGENET_MEAN, IMAGENET_STD
from fmw.notebook import handle_of
from tests.conftest import CIFAR_CLASSES

IMAGENET_FIRST = ["tench", "goldfish", "great white shark"]

FACTORY = '''
import torch
from torch import nn


class Gated(nn.Module):
    """A tiny classifier with one squeeze-and-excitation-like gate written by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.squeeze = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.squeeze(x.mean(dim=(2, 3))))
        x = x * gate[:, :, None, None]
        return self.head(x.mean(dim=(2, 3)))


def build():
    return Gated()
'''


def photo(height: int = 70, width: int = 90) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_an_fmw_checkpoint_by_name_is_a_handle_with_its_training_metadata():
    handle = load_model("cbam")
    assert isinstance(handle, ModelHandle)
    assert (handle.family, handle.name, handle.label, handle.task) == ("fmw", "cbam", "cbam", "classification")
    assert handle.class_names == CIFAR_CLASSES and handle.postprocess is None and not handle.random_weights
    assert handle.input_size == (32, 32) and handle.in_channels == 3
    metadata = handle.checkpoint
    assert metadata is not None and handle.weighting == "cbam" == metadata.architecture.weighting
    assert handle.preprocessing == Preprocessing.centre_window((32, 32), metadata.mean, metadata.std)
    assert handle.minimum_input_size == metadata.architecture.minimum_input_size == 9
    assert handle.metrics is metadata.metrics and handle.metrics["test_top1"] == pytest.approx(0.8837)
    assert handle.source.endswith("cbam.safetensors")

    analysis = analyse_image(handle, photo())
    assert [site.name for site in analysis.sites] == [f"stages.{i}.weighting" for i in range(3)]
    assert len(analysis.predictions) == 5 and analysis.resolution == (32, 32)
    assert all(p.class_name == CIFAR_CLASSES[p.index] for p in analysis.predictions)
    card = model_card(handle, "cbam")
    assert (card.weighting, card.input_size, card.top1) == ("cbam", (32, 32), pytest.approx(88.37))
    assert card.parameters == handle.metrics["parameters"]


def test_load_checkpoint_converts_to_the_same_handle_load_model_gives():
    loaded = load_checkpoint("eca")
    handle = loaded.handle()
    assert handle.model is loaded.model and handle.checkpoint is loaded.metadata and handle.source == loaded.source
    by_spec = load_model("eca")
    assert (handle.name, handle.class_names, handle.preprocessing, handle.minimum_input_size) == (
        by_spec.name,
        by_spec.class_names,
        by_spec.preprocessing,
        by_spec.minimum_input_size,
    )
    first, second = analyse_image(handle, photo()), analyse_image(by_spec, photo())
    assert first.predictions == second.predictions


def test_a_torchvision_model_with_random_weights_is_a_handle():
    handle = load_model("torchvision:mobilenet_v3_small", ModelOptions(random_weights=True))
    assert (handle.family, handle.name, handle.task) == ("torchvision", "mobilenet_v3_small", "classification")
    assert handle.label == "mobilenet_v3_small (random weights)" and handle.random_weights
    assert len(handle.class_names) == 1000 and handle.class_names[:3] == IMAGENET_FIRST
    assert handle.input_size == (224, 224) and handle.preprocessing.resize_size == 256
    assert handle.preprocessing.mean == IMAGENET_MEAN and not handle.preprocessing.whole_image
    assert handle.checkpoint is None and handle.weighting is None and handle.metrics == {}
    assert handle.minimum_input_size == 32

    analysis = analyse_image(handle, photo(), name=handle.label)
    assert len(analysis.sites) == 9 and {site.kind for site in analysis.sites} == {"channel"}
    assert analysis.checkpoint == "mobilenet_v3_small (random weights)" and analysis.resolution == (224, 224)
    assert all(p.class_name == handle.class_names[p.index] for p in analysis.predictions)
    card = model_card(handle, handle.label)
    assert card.weighting == "torchvision: channel" and card.top1 is None
    assert analyse_image(handle, photo(), resolution=64).resolution == (64, 64)
    with pytest.raises(ValueError, match=r"mobilenet_v3_small \(random weights\).*at least 32 px"):
        analyse_image(handle, photo(), resolution=16)


@pytest.mark.skipif(not zoo.timm_available(), reason="timm is not installed (pip install 'timm>=1.0,<2')")
def test_a_timm_model_with_random_weights_is_a_handle():
    handle = load_model("timm:resnet10t-eca", ModelOptions(random_weights=True))
    assert (handle.family, handle.name, handle.task) == ("timm", "resnet10t-eca", "classification")
    assert handle.label == "resnet10t-eca (random weights)" and handle.checkpoint is None and handle.metrics == {}
    assert len(handle.class_names) == 1000 and handle.class_names[:3] == IMAGENET_FIRST
    crop = handle.input_size[0]
    assert handle.input_size == (crop, crop) and handle.preprocessing.resize_size == math.floor(crop / 0.875)
    assert handle.preprocessing.interpolation == "bicubic" and handle.in_channels == 3

    analysis = analyse_image(handle, photo())
    assert len(analysis.sites) == 4 and analysis.resolution == handle.input_size
    assert all(site.channel_gate is not None for site in analysis.sites)
    assert len(analysis.predictions) == 5


def test_a_users_factory_is_a_handle_with_its_options(tmp_path):
    (tmp_path / "gated.py").write_text(FACTORY)
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    options = ModelOptions(input_size=48, classes=tmp_path / "classes.txt")
    handle = load_model(f"{tmp_path / 'gated.py'}:build", options)
    assert (handle.family, handle.name, handle.task) == ("user", "build", "classification")
    assert handle.label == "build (random weights)" and handle.class_names == ["cat", "dog", "bird"]
    assert handle.input_size == (48, 48) and handle.preprocessing.resize_size == 48
    assert (handle.preprocessing.mean, handle.preprocessing.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert handle.checkpoint is None and handle.weighting is None and handle.postprocess is None

    analysis = analyse_image(handle, photo())
    (site,) = analysis.sites
    assert site.channels == 6 and site.before.shape == (6, 24, 24) and list(site.gates) == ["channel"]
    assert sorted(p.class_name for p in analysis.predictions) == ["bird", "cat", "dog"]
    assert model_card(handle, "build").weighting.startswith("user: ")


def test_handle_of_takes_every_form_a_notebook_user_passes(tmp_path):
    handle = load_model("none")
    assert handle_of(handle, None, None, None, None, False) is handle
    converted = handle_of(load_checkpoint("none"), None, None, None, None, False)
    assert converted.family == "fmw" and converted.label == "none"
    module = build_model(weighting="channel", num_classes=4).eval()
    wrapped = handle_of(module, 40, None, None, ["a", "b", "c", "d"], False)
    assert (wrapped.family, wrapped.name, wrapped.input_size) == ("user", "FMWNet", (40, 40))
    assert wrapped.class_names == ["a", "b", "c", "d"] and wrapped.model is module
    by_spec = handle_of("spatial", None, None, None, None, False)
    assert by_spec.weighting == "spatial"
    inspection = fmw.inspect(load_checkpoint("spatial"), photo())
    assert inspection.name == "spatial" and inspection.task == "classification" and len(inspection.site_names) == 3


def test_a_checkpoint_smaller_than_its_architecture_takes_is_refused_when_loaded(tmp_path):
    torch.manual_seed(0)
    model = build_model(weighting="channel", stem_width=4, widths=(8, 8), num_classes=2).eval()
    assert model.config.minimum_input_size == 5
    metadata = CheckpointMetadata(architecture=model.config, class_names=["a", "b"], input_size=(4, 6))
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, metadata)
    with pytest.raises(CheckpointError, match=r"input_size \[4, 6\] is smaller than the 5 px"):
        load_model(str(path))


def test_the_handle_needs_no_checkpoint_to_analyse_a_plain_module():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    handle = ModelHandle(
        model=module,
        name="plain",
        family="user",
        class_names=["left", "right"],
        preprocessing=Preprocessing(40, 32, IMAGENET_MEAN, IMAGENET_STD, "bilinear"),
        source="built in a test",
    )
    assert handle.input_size == (32, 32) and handle.label == "plain" and handle.task == "classification"
    analysis = analyse_image(handle, photo(), top_k=2)
    assert analysis.sites == [] and sorted(p.class_name for p in analysis.predictions) == ["left", "right"]
    assert analysis.checkpoint == "built in a test" and analysis.resolution == (32, 32)


def test_an_inspection_prints_as_one_line_naming_its_sites():
    """In a terminal an Inspection prints what it holds, not every recorded tensor."""
    photo = np.zeros((48, 64, 3), np.uint8)
    one = repr(fmw.inspect("cbam", photo))
    assert one == (
        "Inspection of 'cbam' (classification) on 1 image: 3 sites: "
        "stages.0.weighting (cbam), stages.1.weighting (cbam), stages.2.weighting (cbam)"
    )
    many = repr(fmw.inspect("torchvision:mobilenet_v3_small", [photo, photo], random_weights=True))
    assert "\n" not in many and "tensor" not in many
    assert many.startswith("Inspection of 'mobilenet_v3_small (random weights)' (classification) on 2 images: ")
    assert "9 sites: features.1.block.1 (channel), " in many
    assert many.endswith(", and 5 more")
