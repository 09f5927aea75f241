"""Tests of fmw.analysis.attribution: shapes, Integrated Gradients' completeness, layer attributions on both
sides of a site, progress, and switching weighting off (gates at 1 equal the `none` network)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fmw.analysis.ablation import (
    ALL_SITES,
    WEIGHTING_ON,
    ablation_steps,
    attributions_with_weighting_off,
    compare_weighting_off,
)
from fmw.analysis.attribution import attribute_input, attribute_site
from fmw.models import build_model
from fmw.sites import override_gates, probe

TINY: dict[str, Any] = {"stem_width": 4, "widths": (8, 8), "num_classes": 3}  # NetConfig overrides
CLASSES = ["a", "b", "c"]


def tiny_model(weighting: str = "cbam", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(weighting=weighting, **TINY).eval()
    for module in model.modules():  # random BN statistics, so sites see varied inputs
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None  # tracked by default
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def tiny_inputs(count: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "occlusion"])
def test_input_attribution_shapes_targets_and_progress(method):
    model, inputs = tiny_model(), tiny_inputs()
    fractions: list[float] = []
    result = attribute_input(
        model, inputs, method, n_steps=8, internal_batch_size=8, window=4, stride=4, progress=fractions.append
    )
    assert result.attributions.shape == (2, 3, 16, 16)
    assert result.maps.shape == (2, 16, 16)
    np.testing.assert_allclose(result.maps, result.attributions.sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(result.targets, model(inputs).argmax(1).numpy())
    assert np.isfinite(result.attributions).all() and np.abs(result.attributions).sum() > 0
    assert (result.delta is not None) == (method == "integrated_gradients")
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    if method != "saliency":
        assert len(fractions) > 2  # several batched forward calls reported


def test_integrated_gradients_completeness_within_delta():
    model, inputs = tiny_model("channel"), tiny_inputs(3)
    target = torch.tensor([0, 1, 2])
    result = attribute_input(model, inputs, target=target, n_steps=64, internal_batch_size=48)
    with torch.no_grad():
        difference = (model(inputs) - model(torch.zeros_like(inputs))).gather(1, target.view(-1, 1)).squeeze(1)
    sums = result.attributions.reshape(3, -1).sum(axis=1)
    assert np.all(np.abs(sums - difference.numpy()) <= np.abs(result.delta) + 1e-4)
    assert np.all(np.abs(result.delta) <= 0.02 * np.abs(difference.numpy()) + 1e-3)  # the path integral converged
    np.testing.assert_array_equal(result.targets, [0, 1, 2])


def test_single_target_applies_to_every_image_and_bad_counts_are_refused():
    model, inputs = tiny_model(), tiny_inputs(2)
    assert attribute_input(model, inputs, "saliency", target=2).targets.tolist() == [2, 2]
    with pytest.raises(ValueError, match="3 targets for 2 images"):
        attribute_input(model, inputs, "saliency", target=[0, 1, 2])
    with pytest.raises(ValueError, match="integrated_gradients, saliency, occlusion"):
        attribute_input(model, inputs, "lime")
    with pytest.raises(ValueError, match="normalised float tensor"):
        attribute_input(model, inputs.to(torch.uint8))


@pytest.mark.parametrize("method", ["grad_cam", "activation", "conductance"])
def test_layer_attribution_matches_the_site_tensors(method):
    model, inputs = tiny_model("cbam"), tiny_inputs(2)
    record = probe(model, inputs).site("stages.1.weighting")
    fractions: list[float] = []
    result = attribute_site(
        model, inputs, "stages.1.weighting", method, n_steps=6, internal_batch_size=8, progress=fractions.append
    )
    n, c, h, w = record.before.shape
    expected = (n, 1, h, w) if method == "grad_cam" else (n, c, h, w)
    assert result.before.shape == expected and result.after.shape == expected
    assert result.maps_before.shape == (n, h, w) == result.maps_after.shape
    assert fractions[-1] == 1.0
    if method == "activation":
        np.testing.assert_array_equal(result.before, record.before.numpy())
        np.testing.assert_array_equal(result.after, record.after.numpy())
    if method == "grad_cam":
        assert (result.before >= 0).all() and (result.after >= 0).all()
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


def test_layer_attribution_with_weighting_off_sees_equal_sides():
    model, inputs = tiny_model("channel"), tiny_inputs(1)
    result = attribute_site(model, inputs, "stages.0.weighting", "activation", override="all")
    np.testing.assert_array_equal(result.before, result.after)
    with pytest.raises(KeyError, match=r"no weighting site named 'stages.9'"):
        attribute_site(model, inputs, "stages.9", "activation")


@pytest.mark.parametrize("weighting", ["scale", "spatial", "channel", "cbam", "eca"])
def test_all_gates_at_one_equal_the_none_network(weighting):
    model, inputs = tiny_model(weighting), tiny_inputs(3)
    plain = build_model(weighting="none", **TINY).eval()
    incompatible = plain.load_state_dict(model.state_dict(), strict=False)
    assert not incompatible.missing_keys and incompatible.unexpected_keys  # only the weighting's parameters
    comparison = compare_weighting_off(model, inputs, CLASSES)
    with torch.no_grad():
        expected = plain(inputs).softmax(1).numpy()
    np.testing.assert_array_equal(comparison.rows[-1].probabilities, expected)
    names = ["stages.0.weighting", "stages.1.weighting"]
    assert [row.label for row in comparison.rows] == [WEIGHTING_ON, *names, ALL_SITES]
    with torch.no_grad():
        np.testing.assert_array_equal(comparison.rows[0].probabilities, model(inputs).softmax(1).numpy())
    off = attribute_input(model, inputs, "saliency", override="all", target=1)
    np.testing.assert_array_equal(off.attributions, attribute_input(plain, inputs, "saliency", target=1).attributions)


def test_each_site_off_alone_and_the_table():
    model, inputs = tiny_model("channel"), tiny_inputs(2)
    comparison = compare_weighting_off(model, inputs, CLASSES, top_k=2)
    for row in comparison.rows[1:-1]:
        with override_gates(model, {row.label: 1.0}), torch.no_grad():
            np.testing.assert_array_equal(row.probabilities, model(inputs).softmax(1).numpy())
        assert row.top_indices.shape == (2, 2)
        np.testing.assert_array_equal(row.target_probability, row.probabilities[np.arange(2), comparison.targets])
    table = comparison.table(image=1)
    assert [line["switched off"] for line in table] == [row.label for row in comparison.rows]
    assert table[0]["change"] == 0.0 and table[0]["prediction changed"] is False
    assert all(line["target"] == CLASSES[comparison.targets[1]] and len(line["top-k"]) == 2 for line in table)


def test_dataset_mean_gates_replace_gates_and_spatial_means_are_resized():
    model = tiny_model("cbam")
    inputs = tiny_inputs(2, size=16)
    site = "stages.0.weighting"
    channel_mean = torch.linspace(0.2, 0.9, 8).view(1, 8, 1, 1)
    spatial_mean = torch.full((1, 1, 4, 4), 0.5)  # from another input size: resized to 7x7
    mean_gates = {
        name: {"channel": channel_mean, "spatial": spatial_mean}
        for name in ("stages.0.weighting", "stages.1.weighting")
    }
    comparison = compare_weighting_off(model, inputs, CLASSES, sites=[site], mean_gates=mean_gates)
    assert comparison.replacement == "dataset mean" and [r.label for r in comparison.rows] == [
        WEIGHTING_ON,
        site,
        ALL_SITES,
    ]
    replacement = {site: {"channel": channel_mean, "spatial": torch.full((1, 1, 7, 7), 0.5)}}
    with override_gates(model, replacement), torch.no_grad():
        expected = model(inputs).softmax(1).numpy()
    np.testing.assert_allclose(comparison.rows[1].probabilities, expected, rtol=0, atol=1e-7)
    wrong = {site: {"channel": torch.ones(1, 5, 1, 1)}}
    with pytest.raises(ValueError, match="does not fit this model"):
        compare_weighting_off(model, inputs, CLASSES, sites=[site], mean_gates=wrong)
    with pytest.raises(KeyError, match="no dataset-mean gate"):
        ablation_steps(model, None, {site: {"channel": channel_mean}})


def test_attributions_change_site_by_site():
    model, inputs = tiny_model("channel"), tiny_inputs(1)
    fractions: list[float] = []
    rows = attributions_with_weighting_off(model, inputs, "saliency", progress=fractions.append)
    assert [row.label for row in rows] == [WEIGHTING_ON, "stages.0.weighting", "stages.1.weighting", ALL_SITES]
    assert len({int(row.attribution.targets[0]) for row in rows}) == 1  # one target for every row
    np.testing.assert_array_equal(
        rows[-1].attribution.attributions,
        attribute_input(model, inputs, "saliency", override="all", target=rows[0].attribution.targets).attributions,
    )
    assert not np.array_equal(rows[0].attribution.attributions, rows[-1].attribution.attributions)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
