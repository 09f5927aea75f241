"""Tests of fmw.analysis: checkpoint discovery, preprocessing numbers, predictions equal to the
model's own output, site summaries (gates, energies), orderings, depth matching, batch statistics
and model cards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import fmw.analysis as analysis
from fmw import settings
from fmw.analysis.stats import gate_statistics
from fmw.io import CheckpointMetadata
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import ModelHandle, build_model, count_parameters
from fmw.models.preprocessing import center_crop
from tests.conftest import CIFAR_CLASSES


def loaded(weighting: str, seed: int = 0, metrics: dict | None = None) -> ModelHandle:
    torch.manual_seed(seed)
    model = build_model(weighting=weighting).eval()
    metadata = CheckpointMetadata(architecture=model.config, class_names=CIFAR_CLASSES, metrics=metrics or {})
    return ModelHandle.from_checkpoint(model, metadata, f"{weighting}.safetensors")


def photo(height: int = 60, width: int = 90, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_checkpoint_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.CHECKPOINT_DIRECTORY_VARIABLE, str(tmp_path))
    assert settings.checkpoint_directory() == tmp_path
    monkeypatch.delenv(settings.CHECKPOINT_DIRECTORY_VARIABLE)
    shipped = Path(settings.__file__).resolve().parent / "checkpoints"
    assert settings.checkpoint_directory() == shipped == settings.SHIPPED_CHECKPOINTS
    assert sorted(path.stem for path in shipped.glob("*.safetensors")) == sorted(WEIGHTING_LAYERS)


def test_list_checkpoints_puts_the_family_in_display_order(tmp_path):
    for stem in ["mine", "eca", "none", "cbam", "another"]:
        (tmp_path / f"{stem}.safetensors").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.stem for p in analysis.list_checkpoints(tmp_path)] == ["none", "cbam", "eca", "another", "mine"]
    assert analysis.list_checkpoints(tmp_path / "missing") == []


def test_center_crop_takes_the_centred_window():
    image = np.arange(6 * 10).reshape(6, 10)[:, :, None].repeat(3, axis=2)
    square = center_crop(image)
    assert square.shape == (6, 6, 3) and square[0, 0, 0] == 2
    wide = center_crop(image, aspect=2.0)
    assert wide.shape == (5, 10, 3)


def test_prepare_input_normalises_with_the_checkpoint_statistics():
    metadata = loaded("none").checkpoint
    tensor = analysis.prepare_input(np.full((50, 50, 3), 128, np.uint8), metadata, (32, 32))
    assert tensor.shape == (1, 3, 32, 32)
    expected = (128 / 255 - torch.tensor(metadata.mean)) / torch.tensor(metadata.std)
    torch.testing.assert_close(tensor[0, :, 7, 9], expected)


def test_analysis_predictions_are_the_models_own_and_sites_are_summarised():
    checkpoint = loaded("channel", seed=3)
    image = photo()
    result = analysis.analyse_image(checkpoint, image, name="channel")
    with torch.no_grad():
        logits = checkpoint.model(analysis.prepare_input(center_crop(image), checkpoint.checkpoint, (32, 32)))
    probabilities = logits[0].softmax(0)
    best = probabilities.argsort(descending=True)[:5]
    assert [p.index for p in result.predictions] == best.tolist()
    assert [p.class_name for p in result.predictions] == [CIFAR_CLASSES[i] for i in best]
    assert result.predictions[0].probability == pytest.approx(float(probabilities[best[0]]), rel=1e-5)
    assert result.checkpoint == "channel" and result.resolution == (32, 32) and result.crop.shape == (60, 60, 3)
    assert [(s.name, s.before.shape) for s in result.sites] == [
        ("stages.0.weighting", (64, 15, 15)),
        ("stages.1.weighting", (128, 7, 7)),
        ("stages.2.weighting", (128, 3, 3)),
    ]
    site = result.sites[0]
    np.testing.assert_allclose(site.after, site.before * site.channel_gate[:, None, None], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(site.energy_before, (site.before.astype(np.float64) ** 2).mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(site.energy_ratio, site.channel_gate**2, rtol=1e-4)
    assert site.spatial_gate is None and list(site.gates) == ["channel"]


def test_resolution_changes_map_sizes_and_too_small_is_refused():
    checkpoint = loaded("spatial")
    result = analysis.analyse_image(checkpoint, photo(), resolution=64)
    assert result.resolution == (64, 64)
    assert result.sites[0].spatial_gate.shape == (31, 31) and result.sites[0].channel_gate is None
    with pytest.raises(ValueError, match="at least 9 px"):
        analysis.analyse_image(checkpoint, photo(), resolution=4)


def test_cbam_has_both_gates_and_none_changes_nothing():
    cbam = analysis.analyse_image(loaded("cbam"), photo()).sites[1]
    assert list(cbam.gates) == ["channel", "spatial"]
    assert cbam.channel_gate.shape == (128,) and cbam.spatial_gate.shape == (7, 7)
    identity = analysis.analyse_image(loaded("none"), photo()).sites[0]
    assert identity.gates == {}
    np.testing.assert_array_equal(identity.after, identity.before)
    np.testing.assert_array_equal(identity.energy_ratio, np.ones(64, np.float32))


def test_channel_orderings():
    site = analysis.analyse_image(loaded("eca", seed=1), photo()).sites[0]
    by_gate = analysis.channel_order(site, "gate")
    assert np.all(np.diff(site.channel_gate[by_gate]) <= 0)
    by_change = analysis.channel_order(site, "energy change")
    # "changed most" is fmw.analysis.changes' one definition: the change of each channel's RMS amplitude
    rms_change = np.abs(np.sqrt(site.energy_after.astype(np.float64)) - np.sqrt(site.energy_before.astype(np.float64)))
    assert np.all(np.diff(rms_change[by_change]) <= 1e-6)
    np.testing.assert_array_equal(analysis.channel_order(site, "index"), np.arange(64))
    spatial = analysis.analyse_image(loaded("spatial"), photo()).sites[0]
    assert analysis.available_orderings(spatial) == ("index", "energy change")
    assert analysis.available_orderings(site) == analysis.ORDERINGS
    with pytest.raises(ValueError, match="no gate with a channel axis"):
        analysis.channel_order(spatial, "gate")
    with pytest.raises(ValueError, match="unknown channel ordering"):
        analysis.channel_order(site, "colour")


@pytest.mark.parametrize(
    ("depth", "depths", "sites", "expected"),
    [(0, 3, 3, 0), (2, 3, 3, 2), (1, 3, 5, 2), (2, 3, 4, 3), (4, 5, 3, 2), (0, 1, 3, 0)],
)
def test_site_index_at_depth_lines_up_models_of_different_depth(depth, depths, sites, expected):
    assert analysis.site_index_at_depth(depth, depths, sites) == expected


def test_batch_statistics_average_over_images():
    checkpoint = loaded("cbam", seed=2)
    analyses = [analysis.analyse_image(checkpoint, photo(seed=seed)) for seed in range(3)]
    statistics = analysis.batch_statistics(analyses)
    assert [s.name for s in statistics] == [s.name for s in analyses[0].sites]
    first = statistics[0]
    assert first.images == 3
    assert first.gate_values["channel"].shape == (3 * 64,) and first.gate_values["spatial"].shape == (3 * 15 * 15,)
    gates = np.stack([a.sites[0].channel_gate for a in analyses])
    np.testing.assert_allclose(first.channel_gate_mean, gates.mean(0), rtol=1e-6)
    np.testing.assert_allclose(first.channel_gate_std, gates.std(0), rtol=1e-5, atol=1e-7)
    ratios = np.stack([a.sites[0].energy_ratio for a in analyses])
    np.testing.assert_allclose(first.energy_ratio_mean, ratios.mean(0), rtol=1e-6)
    assert analysis.batch_statistics([]) == []
    none_statistics = analysis.batch_statistics([analysis.analyse_image(loaded("none"), photo())])[0]
    assert none_statistics.gate_values == {} and none_statistics.channel_gate_mean is None


@pytest.mark.parametrize("weighting", ["cbam", "coord", "simam"])
def test_batch_gate_statistics_equal_those_of_a_probe_of_the_same_images(weighting):
    """From the analyses' gates, grouped by predicted class: what gate_statistics finds probing the batch."""
    checkpoint = loaded(weighting, seed=5)
    rgbs = [photo(seed=seed) for seed in range(6)]
    analyses = analysis.analyse_images(checkpoint, rgbs, batch_size=1)
    statistics = analysis.batch_gate_statistics(analyses, CIFAR_CLASSES, source="mine")
    expected = gate_statistics(checkpoint.model, analysis.batch_inputs(checkpoint, rgbs), CIFAR_CLASSES)
    assert (statistics.source, statistics.grouping) == ("mine", "prediction")
    np.testing.assert_array_equal(statistics.class_counts, expected.class_counts)
    assert statistics.class_counts.sum() == 6
    for site, wanted in zip(statistics.sites, expected.sites, strict=True):
        assert (site.name, site.kind, site.index, site.relative_depth, site.channels, site.resolution) == (
            wanted.name,
            wanted.kind,
            wanted.index,
            wanted.relative_depth,
            wanted.channels,
            wanted.resolution,
        )
        assert list(site.stages) == list(wanted.stages)
        for stage, other in zip(site.stages.values(), wanted.stages.values()):
            np.testing.assert_allclose(stage.class_mean, other.class_mean, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(stage.mean_gate(), other.mean_gate(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="at least one image"):
        analysis.batch_gate_statistics([], CIFAR_CLASSES)
    with pytest.raises(ValueError, match="needs a classifier's predictions"):
        analysis.batch_gate_statistics([replace(analyses[0], predictions=[])], CIFAR_CLASSES)


def test_batch_statistics_mean_gate_is_the_gate_statistics_mean():
    """One definition of a stage's mean gate over images: the Batch view's equals Weighting off's replacement."""
    checkpoint = loaded("cbam", seed=2)
    analyses = [analysis.analyse_image(checkpoint, photo(seed=seed)) for seed in range(3)]
    site = analysis.batch_statistics(analyses)[0]
    replacement = analysis.batch_gate_statistics(analyses, CIFAR_CLASSES).replacements()[site.name]
    for stage in site.mean_stages:
        np.testing.assert_allclose(stage.gate, replacement[stage.name].numpy().squeeze(), rtol=1e-6)
        stacked = np.stack([a.sites[0].gates[stage.name] for a in analyses])
        np.testing.assert_allclose(stage.gate, stacked.mean(0), rtol=1e-6)


def test_model_card_counts_and_accuracies_in_percent():
    checkpoint = loaded("channel", metrics={"test_top1": 0.875, "test_top1_weighting_off": 61.5})
    card = analysis.model_card(checkpoint, "channel")
    assert card.parameters == count_parameters(checkpoint.model)
    assert card.top1 == pytest.approx(87.5) and card.top1_weighting_off == pytest.approx(61.5)
    assert card.input_size == (32, 32) and card.weighting == "channel"
    plain = analysis.model_card(loaded("none"), "none")
    assert plain.top1 is None and plain.top1_weighting_off is None
    assert card.multiply_adds > plain.multiply_adds > 1_000_000
