"""One preprocessing for every model (``fmw.models.preprocessing``) gives bit-identical tensors to
the recipes each caller used before it: the dashboard's Lanczos window for fmw checkpoints,
torchvision's ``Resize``, ``CenterCrop``, ``ToTensor`` and ``Normalize`` for zoo classifiers and
segmenters, ``ToTensor`` for detectors (cropped to one size in dataset statistics); and the
DataLoader path (uint8 pixels in workers, normalised later) equals the one-call path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from fmw.analysis import prepare_image
from fmw.io import load_checkpoint
from fmw.models import Preprocessing, load_torchvision_model
from fmw.models.preprocessing import center_crop
from fmw.settings import SHIPPED_CHECKPOINTS

SIZES = [(50, 50), (300, 200), (123, 457), (31, 64)]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES]


def window_reference(rgb: np.ndarray, size: tuple[int, int], mean, std) -> torch.Tensor:
    """The dashboard's former ``prepare_input(center_crop(...))``: Lanczos, float32 / 255, normalised."""
    window = Image.fromarray(np.ascontiguousarray(center_crop(rgb, aspect=size[1] / size[0])))
    resized = np.asarray(window.resize(size[::-1], Image.Resampling.LANCZOS, reducing_gap=2.0), dtype=np.float32)
    scaled = torch.from_numpy(resized / 255.0).permute(2, 0, 1)
    return ((scaled - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)).unsqueeze(0)


def zoo_reference(rgb: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """The zoo models' former ``Preprocessing.transform()``."""
    compose = transforms.Compose(
        [
            transforms.Resize(
                preprocessing.resize_size,
                interpolation=transforms.InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            transforms.CenterCrop(preprocessing.crop_size),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )
    return compose(Image.fromarray(rgb)).unsqueeze(0)


def assert_identical(new: torch.Tensor, old: torch.Tensor) -> None:
    assert new.dtype == old.dtype == torch.float32 and new.shape == old.shape
    assert torch.equal(new, old)


def assert_one_path(preprocessing: Preprocessing, rgb: np.ndarray) -> torch.Tensor:
    """The DataLoader's path (pixels from a PIL image, normalised afterwards) equals the one call."""
    inputs = preprocessing(rgb)
    assert_identical(preprocessing.normalise(preprocessing.pixels(Image.fromarray(rgb)).unsqueeze(0)), inputs)
    return inputs


@pytest.mark.parametrize("resolution", [None, 64])
def test_an_fmw_checkpoint_is_prepared_as_before(images, resolution):
    loaded = load_checkpoint(SHIPPED_CHECKPOINTS / "cbam.safetensors").handle()
    metadata = loaded.checkpoint
    size = metadata.input_size if resolution is None else (resolution, resolution)
    for rgb in images:
        prepared = prepare_image(loaded, rgb, resolution)
        assert_identical(prepared.inputs, window_reference(rgb, size, metadata.mean, metadata.std))
        assert np.array_equal(prepared.crop, center_crop(rgb, aspect=size[1] / size[0]))
        preprocessing = loaded.preprocessing if resolution is None else loaded.preprocessing.at_resolution(resolution)
        assert_identical(assert_one_path(preprocessing, rgb), prepared.inputs)


def test_a_non_square_window_keeps_its_aspect(images):
    preprocessing = Preprocessing.centre_window((24, 40), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    for rgb in images:
        assert_identical(assert_one_path(preprocessing, rgb), window_reference(rgb, (24, 40), (0.5,) * 3, (0.25,) * 3))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "lraspp_mobilenet_v3_large"])
@pytest.mark.parametrize("resolution", [None, 64])
def test_a_torchvision_classifier_and_segmenter_are_prepared_as_before(images, name, resolution):
    zoo = load_torchvision_model(name, weights="random")
    preprocessing = zoo.preprocessing if resolution is None else zoo.preprocessing.at_resolution(resolution)
    for rgb in images:
        prepared = prepare_image(zoo, rgb, resolution)
        reference = zoo_reference(rgb, preprocessing)
        assert_identical(prepared.inputs, reference)
        assert_identical(assert_one_path(preprocessing, rgb), reference)
        std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)
        mean = torch.tensor(preprocessing.mean).view(1, -1, 1, 1)
        shown = ((reference * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
        assert np.array_equal(prepared.crop, shown.numpy())  # the former crop: the input, denormalised


def test_a_detector_takes_the_whole_image_as_before(images):
    zoo = load_torchvision_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="random")
    for rgb in images:
        prepared = prepare_image(zoo, rgb, 64)  # a detector's own transform sizes it: no resolution
        assert_identical(prepared.inputs, transforms.ToTensor()(Image.fromarray(rgb)).unsqueeze(0))
        assert_identical(assert_one_path(zoo.preprocessing, rgb), prepared.inputs)


def test_a_detectors_batches_for_dataset_statistics_are_cropped_as_before(images):
    """Dataset statistics batch images of many sizes: a detector's are resized and centre-cropped to
    its short side, as the former ``streaming.model_input`` did (``ToTensor`` then mean 0, std 1)."""
    preprocessing = load_torchvision_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="random").preprocessing
    batchable = preprocessing.batchable()
    for rgb in images:
        reference = zoo_reference(rgb, batchable)
        assert_identical(batchable.normalise(batchable.pixels(Image.fromarray(rgb)).unsqueeze(0)), reference)
        assert reference.shape[-2:] == (320, 320)
