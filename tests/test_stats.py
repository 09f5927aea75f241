"""Tests of fmw.analysis.stats: a hand-built model whose first site is class-specific and whose second is
class-agnostic, the specificity formula on hand-computed numbers, JSON round trips and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fmw.analysis.ablation import compare_weighting_off
from fmw.analysis.stats import GateStatistics, class_specificity, gate_statistics, split_gate_statistics
from fmw.cli.stats import main
from fmw.io import load_split
from fmw.layers import SqueezeExcitation
from fmw.sites import override_gates

CLASSES = ["zero", "one", "two"]


def signal_model() -> nn.Module:
    """Site "0": gate_c = sigmoid(4 mean_c - 2), high on the lit channel (class-specific). Site "1":
    every channel's gate = sigmoid(2 sum_c mean_c - 2.5), set by overall brightness (class-agnostic)."""
    specific, agnostic = SqueezeExcitation(3, min_hidden=3), SqueezeExcitation(3, min_hidden=3)
    assert specific.fc1.bias is not None and specific.fc2.bias is not None  # SqueezeExcitation's convs have biases
    assert agnostic.fc1.bias is not None and agnostic.fc2.bias is not None
    with torch.no_grad():
        specific.fc1.weight.copy_(2 * torch.eye(3).view(3, 3, 1, 1))
        specific.fc1.bias.zero_()
        specific.fc2.weight.copy_(2 * torch.eye(3).view(3, 3, 1, 1))
        specific.fc2.bias.fill_(-2.0)
        agnostic.fc1.weight.zero_()
        agnostic.fc1.weight[0].fill_(1.0)
        agnostic.fc1.bias.zero_()
        agnostic.fc2.weight.zero_()
        agnostic.fc2.weight[:, 0].fill_(2.0)
        agnostic.fc2.bias.fill_(-2.5)
    return nn.Sequential(specific, agnostic, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def signal_images(per_class: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k lights channel k (+1) over a random brightness shared by all channels, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(per_class)
    brightness = 0.2 * torch.rand(len(labels), 1, 1, 1, generator=generator)
    images = brightness + 0.05 * torch.randn(len(labels), 3, 4, 4, generator=generator)
    images[torch.arange(len(labels)), labels] += 1.0
    return images, labels


def test_statistics_recover_the_class_signal_and_rank_specificity():
    images, labels = signal_images()
    statistics = gate_statistics(signal_model(), images, CLASSES, labels, batch_size=16)
    assert statistics.images == 90 and statistics.class_counts.tolist() == [30, 30, 30]
    specific, agnostic = statistics.sites
    assert (specific.name, specific.kind, agnostic.name) == ("0", "channel", "1")
    class_mean = specific.stages["channel"].class_mean
    assert class_mean.shape == (3, 3)
    assert class_mean.argmax(axis=1).tolist() == [0, 1, 2]
    assert specific.specificity > 0.8
    assert agnostic.specificity < 0.2
    assert specific.specificity > 5 * agnostic.specificity
    assert [site.relative_depth for site in statistics.sites] == [0.0, 1.0]


def test_statistics_equal_direct_means_and_give_override_replacements():
    images, labels = signal_images(per_class=7, seed=3)
    model = signal_model()
    statistics = gate_statistics(model, images, CLASSES, labels, batch_size=5)
    gate = torch.sigmoid(4 * images.mean(dim=(2, 3)) - 2).double()
    expected = torch.stack([gate[labels == k].mean(0) for k in range(3)]).numpy()
    np.testing.assert_allclose(statistics.site("0").stages["channel"].class_mean, expected, rtol=1e-6)
    np.testing.assert_allclose(statistics.site("0").stages["channel"].mean, gate.mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        statistics.site("0").stages["channel"].std, gate.std(0, unbiased=False).numpy(), atol=1e-6
    )
    replacements = statistics.replacements()
    assert replacements["0"]["channel"].shape == (1, 3, 1, 1)
    with override_gates(model, replacements), torch.no_grad():
        expected_logits = model(images)
    comparison = compare_weighting_off(model, images, CLASSES, mean_gates=replacements)
    np.testing.assert_allclose(comparison.rows[-1].probabilities, expected_logits.softmax(1).numpy(), atol=1e-6)


def test_grouping_by_prediction_for_unlabelled_uploads():
    images, _ = signal_images(per_class=4)
    model = signal_model()
    statistics = gate_statistics(model, images, CLASSES)
    predicted = model(images).argmax(1)
    assert statistics.grouping == "prediction"
    assert statistics.class_counts.tolist() == torch.bincount(predicted, minlength=3).tolist()


def test_specificity_formula_on_hand_computed_cases():
    # two classes, gate fully set by the class: [1, 0] vs [0, 1], 5 images each
    counts = np.array([5, 5])
    sums = np.array([[5.0, 0.0], [0.0, 5.0]])
    specificity, distance = class_specificity(sums, sums.copy(), counts)
    assert distance == pytest.approx(1.0)
    assert specificity == pytest.approx(math.sqrt(2.0))  # sqrt(K / (K - 1)) for K = 2
    # a constant gate (per-channel scaling) is not class-specific
    constant = np.full((3, 4), 10 * 0.7)
    assert class_specificity(constant, constant * 0.7, np.array([10, 10, 10])) == (0.0, 0.0)
    # one class with images: undefined
    assert class_specificity(sums, sums, np.array([5, 0])) == (None, None)
    # gates drawn from one distribution for every class: near 0 after the noise correction
    rng = np.random.default_rng(0)
    gates = rng.uniform(size=(300, 16))
    groups = np.repeat(np.arange(3), 100)
    sums = np.stack([gates[groups == k].sum(0) for k in range(3)])
    squares = np.stack([(gates[groups == k] ** 2).sum(0) for k in range(3)])
    noise_only, _ = class_specificity(sums, squares, np.array([100, 100, 100]))
    assert noise_only < 0.05


def test_json_round_trip_and_refusal():
    images, labels = signal_images(per_class=3)
    statistics = gate_statistics(signal_model(), images, CLASSES, labels)
    data = json.loads(json.dumps(statistics.to_json()))
    again = GateStatistics.from_json(data)
    assert again.class_names == CLASSES and again.images == 9 and again.grouping == "label"
    for site, copy in zip(statistics.sites, again.sites):
        assert (site.name, site.kind, site.specificity) == (copy.name, copy.kind, copy.specificity)
        np.testing.assert_allclose(copy.stages["channel"].class_mean, site.stages["channel"].class_mean)
    with pytest.raises(ValueError, match="not an fmw gate-statistics file"):
        GateStatistics.from_json({"sites": []})


def write_image_folder(root, classes, per_class: int = 3, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            pixels[..., label] = 255  # class k: colour channel k saturated
            Image.fromarray(pixels).save(folder / f"{index}.png")


def test_stats_cli_writes_json_and_html(tmp_path, checkpoint_factory, capsys):
    from tests.conftest import CIFAR_CLASSES

    checkpoint = checkpoint_factory("cbam", stem_width=4, widths=(8, 8), num_classes=3)
    write_image_folder(tmp_path / "data", CIFAR_CLASSES[:3], per_class=3)
    out, page = tmp_path / "stats.json", tmp_path / "stats.html"
    code = main(
        [
            str(checkpoint),
            "--data",
            str(tmp_path / "data"),
            "--limit",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--html",
            str(page),
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert {
        "format",
        "source",
        "grouping",
        "images",
        "class_names",
        "class_counts",
        "specificity_definition",
        "sites",
    } <= set(data)
    assert data["images"] == 6 and data["class_counts"] == [2, 2, 2]
    assert [site["name"] for site in data["sites"]] == ["stages.0.weighting", "stages.1.weighting"]
    assert data["grouping"] == "label" and data["class_names"] == CIFAR_CLASSES[:3]
    for site, size in zip(data["sites"], (15, 7)):  # the 16-px images resized to the checkpoint's 32 px
        assert site["resolution"] == [size, size] and site["channels"] == 8
        assert set(site["stages"]) == {"channel", "spatial"}
        assert np.array(site["stages"]["channel"]["class_mean"]).shape == (3, 8)
        assert np.array(site["stages"]["spatial"]["class_mean"]).shape == (3, size * size)
        assert site["stages"]["spatial"]["shape"] == [size, size]
        assert site["specificity"] == site["stages"]["channel"]["specificity"] >= 0
    html = page.read_text()
    assert html.count('class="plotly-graph-div"') == 1 + 2 * 2  # depth chart + 2 sites x 2 stages
    assert html.count("* plotly.js v") == 1
    assert "stages.1.weighting" in capsys.readouterr().out


def test_split_statistics_report_progress(tmp_path, checkpoint_factory):
    from fmw.io import load_checkpoint
    from tests.conftest import CIFAR_CLASSES

    write_image_folder(tmp_path / "data", CIFAR_CLASSES[:2], per_class=3)
    loaded = load_checkpoint(checkpoint_factory("spatial", stem_width=4, widths=(8,), num_classes=2))
    fractions: list[float] = []
    statistics = split_gate_statistics(
        loaded.model,
        load_split(tmp_path / "data", "test"),
        loaded.metadata.mean,
        loaded.metadata.std,
        batch_size=4,
        progress=fractions.append,
    )
    assert fractions == [4 / 6, 1.0]
    (site,) = statistics.sites
    assert set(site.stages) == {"spatial"} and site.stages["spatial"].class_mean.shape == (2, 49)
    assert statistics.replacements()[site.name]["spatial"].shape == (1, 1, 7, 7)


def test_stats_cli_errors_are_one_line(tmp_path, checkpoint_factory, capsys):

    write_image_folder(tmp_path / "data", ["cats", "dogs", "eels"], per_class=1)
    out = str(tmp_path / "stats.json")
    assert main([str(tmp_path / "missing.safetensors"), "--data", str(tmp_path / "data"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    checkpoint = checkpoint_factory("channel", stem_width=4, widths=(8,), num_classes=3)
    assert main([str(checkpoint), "--data", str(tmp_path / "data"), "--limit", "0", "--out", out]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main([str(checkpoint), "--model", str(checkpoint), "--data", str(tmp_path / "data"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give one model, an fmw checkpoint or --model SPEC; 2 were given" in err
    assert main(["--data", str(tmp_path / "data"), "--out", out]) == 2
    assert "give one model" in capsys.readouterr().err and not (tmp_path / "stats.json").exists()


def test_stats_cli_groups_by_folder_when_folders_are_not_the_models_classes(tmp_path, checkpoint_factory, capsys):
    from tests.conftest import CIFAR_CLASSES

    write_image_folder(tmp_path / "data", ["cats", "dogs", "eels"], per_class=2)
    checkpoint = checkpoint_factory("channel", stem_width=4, widths=(8,), num_classes=3)
    out = tmp_path / "stats.json"
    assert (
        main(["--model", str(checkpoint), "--data", str(tmp_path / "data"), "--device", "cpu", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "folders 'cats', 'dogs', 'eels' are not among the model's classes" in printed
    assert f"({', '.join(map(repr, CIFAR_CLASSES[:3]))})" in printed
    assert "statistics are grouped by folder and accuracy is not measured" in printed
    data = json.loads(out.read_text())
    assert data["grouping"] == "folder" and data["class_names"] == ["cats", "dogs", "eels"]
    assert data["class_counts"] == [2, 2, 2]
