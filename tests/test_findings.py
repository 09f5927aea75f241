"""fmw.analysis.findings: writing statistics small and tied to their checkpoint, reading them back
(stale, missing and broken files refused with what to do), the series by depth per gate stage, the
depth trend in words; and fmw.layers.descriptions, the words on each kind."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from fmw.analysis.findings import (
    SE_PAPER_FINDING,
    SpecificitySeries,
    depth_finding,
    file_sha256,
    regenerate_command,
    shipped_statistics,
    specificity_series,
    statistics_json,
    statistics_path,
    steepest_rise,
)
from fmw.analysis.stats import GateStatistics, gate_statistics
from fmw.io import load_checkpoint
from fmw.layers import WEIGHTING_LAYERS
from fmw.layers.descriptions import KIND_DESCRIPTIONS, describe_kind
from tests.conftest import CIFAR_CLASSES
from tests.optional import approx_optional


@pytest.fixture
def cbam_statistics(checkpoint_factory) -> tuple[object, GateStatistics]:
    path = checkpoint_factory("cbam", seed=2, stem_width=4, widths=(8, 8))
    loaded = load_checkpoint(path)
    torch.manual_seed(0)
    inputs = torch.randn(12, 3, 32, 32)
    labels = torch.arange(12) % 3
    return path, gate_statistics(loaded.model, inputs, CIFAR_CLASSES, labels, source="tiny")


def test_written_statistics_name_their_checkpoint_and_round_to_the_digits_asked(cbam_statistics):
    path, statistics = cbam_statistics
    full = json.loads(statistics_json(statistics, checkpoint=path))
    assert full["checkpoint"] == {"file": path.name, "sha256": file_sha256(path)}
    rounded_text = statistics_json(statistics, checkpoint=path, digits=3)
    rounded = json.loads(rounded_text)
    assert len(rounded_text) < len(statistics_json(statistics, checkpoint=path)) / 2
    assert "\n" not in rounded_text, "compact"
    exact = full["sites"][0]["stages"]["channel"]["class_mean"][0]
    short = rounded["sites"][0]["stages"]["channel"]["class_mean"][0]
    assert short == [float(f"{value:.3g}") for value in exact]
    np.testing.assert_allclose(short, exact, rtol=5e-3)
    assert rounded["class_counts"] == full["class_counts"] and rounded["sites"][1]["index"] == 1, "integers stay"
    back = GateStatistics.from_json(rounded)
    assert back.sites[0].specificity == approx_optional(statistics.sites[0].specificity, rel=5e-3)
    with pytest.raises(ValueError, match="at least 1"):
        statistics_json(statistics, digits=0)


def test_shipped_statistics_are_read_only_for_the_checkpoint_they_were_made_from(cbam_statistics, checkpoint_factory):
    path, statistics = cbam_statistics
    target = statistics_path(path)
    assert target == path.parent / "stats" / "cbam.json"
    missing = shipped_statistics(path)
    assert missing.statistics is None and f"no statistics at {target}" in missing.problem
    assert regenerate_command(path) in missing.problem
    target.parent.mkdir()
    target.write_text(statistics_json(statistics, checkpoint=path, digits=4))
    found = shipped_statistics(path)
    assert found.problem is None
    assert [site.name for site in found.statistics.sites] == [site.name for site in statistics.sites]
    checkpoint_factory("cbam", seed=3, stem_width=4, widths=(8, 8))  # same file name, other weights: retrained
    stale = shipped_statistics(path)
    assert stale.statistics is None and "made from another version of cbam.safetensors" in stale.problem
    target.write_text("{not json")
    assert "is unreadable" in shipped_statistics(path).problem
    target.write_text(json.dumps({"format": "something else"}))
    assert "is unreadable" in shipped_statistics(path).problem


def test_specificity_series_give_one_line_per_gate_stage(cbam_statistics):
    _, statistics = cbam_statistics
    lines = specificity_series(statistics, "mine")
    assert [line.label for line in lines] == ["mine, channel gate", "mine, spatial gate"]
    assert [line.stage for line in lines] == ["channel", "spatial"]
    np.testing.assert_allclose(lines[0].depths, [0.0, 1.0])
    np.testing.assert_allclose(lines[1].values, [site.stages["spatial"].specificity for site in statistics.sites])
    assert lines[0].sites == ["stages.0.weighting", "stages.1.weighting"]


def series(model: str, kind: str, values: list[float], stages: int = 1, stage: str = "channel") -> SpecificitySeries:
    depths = np.linspace(0.0, 1.0, len(values))
    names = [f"stages.{i}.weighting" for i in range(len(values))]
    return SpecificitySeries(model, kind, stage, stages, depths, np.array(values), names)


def test_the_depth_finding_groups_models_by_trend_next_to_the_papers_finding():
    text = depth_finding(
        [
            series("eca", "eca", [0.45, 0.59, 0.88]),
            series("channel", "channel", [0.47, 0.57, 0.38]),
            series("cbam", "cbam", [0.31, 0.33, 0.28], stages=2, stage="spatial"),
            series("down", "eca", [0.60, 0.50, 0.40]),
            series("scale", "scale", [0.0, 0.0, 0.0]),
            series("single", "eca", [0.5, float("nan"), float("nan")]),
        ]
    )
    assert text.startswith(SE_PAPER_FINDING)
    assert "rises from the first site to the last for eca (0.45 → 0.59 → 0.88)" in text
    assert "rises, then falls for channel (SE) (0.47 → 0.57 → 0.38)" in text
    assert "stays about level for cbam, spatial gate (0.31 → 0.33 → 0.28)" in text
    assert "falls from the first site to the last for down (0.60 → 0.50 → 0.40)" in text
    assert "The gate of scale (LayerScale) is the same for every image" in text
    assert "single" not in text, "one defined site has no trend"
    assert "No model here" in depth_finding([series("one", "eca", [0.3])])


def test_the_steepest_rise_is_a_rising_channel_gate_by_more_than_the_tolerance():
    lines = [
        series("se", "channel", [0.47, 0.57, 0.38]),  # rises, then falls
        series("cbam", "cbam", [0.47, 0.68, 0.76], stages=2),
        series("eca", "eca", [0.45, float("nan"), 0.88]),  # the undefined middle site is skipped
        series("coord", "coord", [0.35, 0.50, 0.89], stages=2, stage="coord_w"),  # steeper, but not a channel gate
        series("flat", "eca", [0.30, 0.31, 0.33]),  # level within the tolerance
    ]
    assert steepest_rise(lines).model == "eca"
    assert steepest_rise(lines).numbers == "0.45 → 0.88" and steepest_rise(lines).rise == pytest.approx(0.43)
    assert steepest_rise(lines, layout="coord_w").model == "coord"
    assert steepest_rise([series("a", "eca", [0.25, 0.5]), series("b", "eca", [0.5, 0.75])]).model == "a", "a tie"
    assert steepest_rise(lines[:1] + lines[-1:]) is None
    assert steepest_rise([series("x", "cbam", [0.1, 0.6], stage="channel_2")]).layout == "channel"


def test_every_kind_is_described_with_its_formula_and_paper():
    assert set(WEIGHTING_LAYERS) <= set(KIND_DESCRIPTIONS)
    for kind, description in KIND_DESCRIPTIONS.items():
        assert description.formula.startswith("y =") or kind == "cbam"
        assert description.gate.endswith(".")
        assert description.url.startswith("https://") if kind != "none" else not description.url
        layer = WEIGHTING_LAYERS[kind]
        documented = re.findall(r"``(y = [^`]+)``", layer.__doc__ or "")
        if documented and kind != "cbam":  # CBAM's docstring writes Mc and Ms; the description spells them out
            assert description.formula.startswith(documented[0]), kind
    assert describe_kind("channel").name == "channel (SE)" and describe_kind("eca").name == "eca"
    other = describe_kind("something", ("channel", "spatial"))
    assert other.title == "something" and "one value per channel and one map over the positions" in other.gate


def test_statistics_scope_says_what_a_file_averages_over_from_its_own_fields():
    """The dashboard's texts about shipped statistics come from the files: count, source name and split,
    grouping (never the folder the file was made in)."""
    from fmw.analysis.findings import statistics_scope
    from fmw.analysis.stats import GateStatistics

    def scope(source: str, grouping: str, count: int) -> str:
        return statistics_scope(GateStatistics(source, grouping, ["a", "b"], np.array([count, 0]), []))

    assert scope("/data/cifar10-jpg.zip:test", "label", 10000) == (
        "10,000 images of cifar10-jpg.zip (test split), grouped by true class"
    )
    assert scope("my/photos", "prediction", 12) == "12 images of photos, grouped by predicted class"
    assert (
        scope("torchvision:/cache/cifar10:train", "label", 5)
        == "5 images of cifar10 (train split), grouped by true class"
    )
