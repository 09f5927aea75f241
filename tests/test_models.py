"""Tests of the network family: config round trip and validation, identical sites for every
weighting kind, input sizes, and the budget (parameters, multiply-adds) checked by hand."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from typing import Any

import pytest
import torch
from torch import nn

from fmw.layers import WEIGHTING_LAYERS
from fmw.models import NetConfig, build_model, count_multiply_adds, count_parameters
from fmw.sites import find_sites

KINDS = list(WEIGHTING_LAYERS)
SMALL: dict[str, Any] = {"stem_width": 8, "widths": (8, 16, 32)}  # NetConfig overrides


def test_config_round_trips_through_json() -> None:
    config = NetConfig(weighting="cbam", num_classes=7, in_channels=1, stem_width=6, widths=(16, 32), logit_scale=0.1)
    text = config.to_json()
    data = json.loads(text)
    assert set(data) == {f.name for f in fields(NetConfig)}, "every field is written"
    assert data["widths"] == [16, 32] and data["weighting"] == "cbam" and data["logit_scale"] == 0.1
    again = NetConfig.from_json(text)
    assert again == config
    assert again.widths == (16, 32) and isinstance(again.widths, tuple)
    assert again.to_json() == text


def test_every_kind_has_the_same_sites() -> None:
    expected = ["stages.0.weighting", "stages.1.weighting", "stages.2.weighting"]
    for kind in KINDS:
        sites = find_sites(build_model(weighting=kind, **SMALL))
        assert [site.name for site in sites] == expected, kind
        assert {site.kind for site in sites} == {kind}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(32, 32), (64, 48)])
def test_accepts_cifar_and_larger_inputs(kind: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(weighting=kind, **SMALL).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def hand_counted_multiply_adds(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-adds of every 1-D/2-D convolution and linear layer, from the output sizes seen by hooks."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            total += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    counted = (nn.Conv1d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    return total


def test_default_model_fits_the_budget() -> None:
    model = build_model()
    parameters = count_parameters(model)
    multiply_adds = count_multiply_adds(model)
    assert 500_000 <= parameters <= 700_000, parameters
    assert multiply_adds < 100_000_000, multiply_adds
    # whitening 3->24 with 2x2 kernels at 31x31, then per block a 3x3 conv at its input size and
    # one at half of it, plus the 128x10 head
    by_hand = 3 * 24 * 4 * 31 * 31 + 1280
    for in_width, width, side in ((24, 64, 31), (64, 128, 15), (128, 128, 7)):
        by_hand += in_width * width * 9 * side * side + width * width * 9 * (side // 2) ** 2
    assert multiply_adds == by_hand == hand_counted_multiply_adds(model, (32, 32)) == 54_223_904


@pytest.mark.parametrize("kind", KINDS)
def test_multiply_adds_agree_with_a_hook_count(kind: str) -> None:
    model = build_model(weighting=kind, **SMALL)
    assert count_multiply_adds(model, (16, 24)) == hand_counted_multiply_adds(model, (16, 24))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_build_model_takes_a_config_and_overrides() -> None:
    config = NetConfig(weighting="eca", **SMALL)
    assert build_model(config).config == config
    assert build_model(config, weighting="scale").config == NetConfig(weighting="scale", **SMALL)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"weighting": "attention"}, ["'attention'", "none", "cbam", "eca"]),
        ({"widths": ()}, ["widths", "positive"]),
        ({"widths": (16, 0)}, ["widths", "(16, 0)"]),
        ({"num_classes": 0}, ["num_classes", "positive"]),
        ({"family": "vgg"}, ["'vgg'", "fmw-whiten"]),
        ({"family": "fmw-resnet"}, ["'fmw-resnet'", "retrained"]),
        ({"stem_width": 7}, ["stem_width must be even", "7"]),
        ({"stem_width": 26}, ["at most 24", "26"]),
        ({"logit_scale": 0.0}, ["logit_scale must be a positive number", "0.0"]),
        ({"num_classes": 10.0}, ["num_classes must be a positive integer", "10.0"]),
        ({"num_classes": True}, ["num_classes must be a positive integer", "True"]),
        ({"widths": (16.7, 32)}, ["widths", "16.7"]),
        ({"widths": ("a",)}, ["widths", "'a'"]),
    ],
)
def test_invalid_config_is_refused_with_a_useful_message(arguments: dict, words: list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape(words[0])) as error:
        NetConfig(**arguments)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", ["not valid JSON"]),
        ("[1, 2]", ["JSON object", "list"]),
        ('{"weighting": "none", "depth": 3}', ["unknown architecture config keys", "depth", "widths"]),
        ('{"weighting": "none", "widths": 5}', ["widths must be a non-empty list", "got 5"]),
    ],
)
def test_malformed_config_json_is_refused_with_a_useful_message(text: str, words: list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape(words[0])) as error:
        NetConfig.from_json(text)
    for word in words:
        assert word in str(error.value)
