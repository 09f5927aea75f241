"""Tests of the weighting layers: shapes, gate ranges, gradients, the registry, and each layer's
maths against a hand computation written with plain Python loops on a tiny tensor."""

from __future__ import annotations

import math
from typing import TypeVar

import pytest
import torch

from fmw.layers import (
    CBAM,
    WEIGHTING_LAYERS,
    ChannelScaling,
    CoordinateAttention,
    EfficientChannelAttention,
    NoWeighting,
    SimAM,
    SpatialAttention,
    SqueezeExcitation,
    WeightingLayer,
    create_weighting,
    eca_kernel_size,
    squeeze_excitation_hidden,
)

KINDS = ["none", "scale", "spatial", "channel", "cbam", "eca", "coord", "simam"]
SIGMOID_KINDS = ["spatial", "channel", "cbam", "eca", "coord", "simam"]
GATE_SHAPES = {
    "channel": lambda n, c, h, w: (n, c, 1, 1),
    "spatial": lambda n, c, h, w: (n, 1, h, w),
    "coord_w": lambda n, c, h, w: (n, c, 1, w),
    "coord_h": lambda n, c, h, w: (n, c, h, 1),
    "full": lambda n, c, h, w: (n, c, h, w),
}
EXPECTED_STAGES = {
    "none": [],
    "scale": ["channel"],
    "spatial": ["spatial"],
    "channel": ["channel"],
    "cbam": ["channel", "spatial"],
    "eca": ["channel"],
    "coord": ["coord_w", "coord_h"],
    "simam": ["full"],
}

Grid = list[list[list[float]]]  # [channel][row][column] of one image


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def tiny_input() -> torch.Tensor:
    """One 4-channel 3x3 image with distinct, signed values (float64 for exact comparison)."""
    torch.manual_seed(7)
    return torch.randn(1, 4, 3, 3, dtype=torch.float64)


Layer = TypeVar("Layer", bound=torch.nn.Module)


def bias_of(layer: torch.nn.Conv2d | torch.nn.Linear) -> torch.Tensor:
    assert layer.bias is not None, f"{type(layer).__name__} built without a bias"
    return layer.bias


def randomised(layer: Layer, seed: int = 3) -> Layer:
    """The layer in float64 with every parameter drawn at random, so no weight is a default."""
    torch.manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn_like(parameter))
    return layer


def grid(x: torch.Tensor) -> Grid:
    return x[0].tolist()


def spatial_mean(channel: list[list[float]]) -> float:
    values = [v for row in channel for v in row]
    return sum(values) / len(values)


def spatial_max(channel: list[list[float]]) -> float:
    return max(v for row in channel for v in row)


def dense(weight: list, bias: list | None, inputs: list[float]) -> list[float]:
    """``W @ inputs + b`` for a 1x1 convolution's weight of shape (out, in, 1, 1)."""
    outputs = []
    for o, row in enumerate(weight):
        total = bias[o] if bias is not None else 0.0
        for i, w in enumerate(row):
            total += w[0][0] * inputs[i]
        outputs.append(total)
    return outputs


def scale_channels(image: Grid, factors: list[float]) -> Grid:
    return [[[v * factors[c] for v in row] for row in image[c]] for c in range(len(image))]


def scale_positions(image: Grid, factors: list[list[float]]) -> Grid:
    return [[[v * factors[i][j] for j, v in enumerate(row)] for i, row in enumerate(channel)] for channel in image]


def assert_matches(output: torch.Tensor, expected: Grid) -> None:
    torch.testing.assert_close(output[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- shapes, gates, gradients


def gate_modules(layer: WeightingLayer) -> dict[str, torch.nn.Module]:
    """Each stage's name -> the submodule whose output is that stage's gate."""
    modules: dict[str, dict[str, str]] = {
        "none": {},
        "scale": {"channel": "gate"},
        "spatial": {"spatial": "gate"},
        "channel": {"channel": "gate"},
        "cbam": {"channel": "channel.gate", "spatial": "spatial.gate"},
        "eca": {"channel": "gate"},
        "coord": {"coord_w": "width_gate", "coord_h": "height_gate"},
        "simam": {"full": "gate"},
    }
    return {stage: layer.get_submodule(name) for stage, name in modules[layer.kind].items()}


def capture_gates(layer: WeightingLayer, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gates: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, stage=stage: gates.__setitem__(stage, o))
        for stage, module in gate_modules(layer).items()
    ]
    try:
        output = layer(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, gates


@pytest.mark.parametrize("kind", KINDS)
def test_output_shape_gate_shapes_and_contract(kind: str) -> None:
    torch.manual_seed(0)
    n, c, h, w = 2, 16, 5, 6
    layer = create_weighting(kind, c)
    x = torch.randn(n, c, h, w)
    output, gates = capture_gates(layer, x)

    assert output.shape == x.shape
    assert list(gates) == EXPECTED_STAGES[kind]
    for stage, gate in gates.items():
        assert gate.shape == GATE_SHAPES[stage](n, c, h, w), (kind, stage)
    # forward(x) == x * gate, gates applied in order (CBAM: channel, then spatial)
    expected = x
    for gate in gates.values():
        expected = expected * gate
    assert torch.equal(output, expected)


@pytest.mark.parametrize("kind", SIGMOID_KINDS)
def test_sigmoid_gates_lie_in_unit_interval(kind: str) -> None:
    torch.manual_seed(1)
    layer = randomised(create_weighting(kind, 8)).float()
    x = 10 * torch.randn(3, 8, 4, 4)
    _, gates = capture_gates(layer, x)
    for gate in gates.values():
        assert gate.min() >= 0 and gate.max() <= 1
        assert gate.max() - gate.min() > 0, "a constant gate would not test the range"


def test_scale_gate_is_the_parameter_broadcast() -> None:
    layer = ChannelScaling(3)
    assert torch.equal(layer.gate.weight, torch.ones(3)), "initialised to 1"
    with torch.no_grad():
        layer.gate.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
    _, gates = capture_gates(layer, torch.zeros(2, 3, 4, 4))
    assert torch.equal(gates["channel"], torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1).expand(2, 3, 1, 1))


def test_no_weighting_is_the_identity_without_parameters() -> None:
    layer = NoWeighting(5)
    x = torch.randn(2, 5, 3, 3)
    assert torch.equal(layer(x), x)
    assert list(layer.parameters()) == []


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in ("none", "simam")])
def test_gradients_reach_every_parameter(kind: str) -> None:
    torch.manual_seed(2)
    layer = create_weighting(kind, 16)
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    upstream = torch.randn(2, 16, 5, 5)
    (layer(x) * upstream).sum().backward()
    named = dict(layer.named_parameters())
    assert named, f"{kind} should have parameters"
    for name, parameter in named.items():
        assert parameter.grad is not None, f"{kind}.{name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{kind}.{name} got an all-zero gradient"
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- maths by hand


def test_scale_matches_hand_computation() -> None:
    layer = ChannelScaling(4).double()
    factors = [0.5, -2.0, 3.0, 0.0]
    with torch.no_grad():
        layer.gate.weight.copy_(torch.tensor(factors))
    x = tiny_input()
    assert_matches(layer(x), scale_channels(grid(x), factors))


def test_spatial_matches_hand_computation() -> None:
    layer = randomised(SpatialAttention(4))
    x = tiny_input()
    image = grid(x)
    weight = [w[0][0] for w in layer.conv.weight[0].tolist()]
    bias = bias_of(layer.conv).item()
    gate = [[sigmoid(bias + sum(weight[c] * image[c][i][j] for c in range(4))) for j in range(3)] for i in range(3)]
    assert_matches(layer(x), scale_positions(image, gate))


def test_squeeze_excitation_matches_hand_computation() -> None:
    layer = randomised(SqueezeExcitation(4))
    assert layer.fc1.out_channels == 4, "hidden width min(8, C) = 4 for C = 4"
    x = tiny_input()
    image = grid(x)
    squeezed = [spatial_mean(channel) for channel in image]
    hidden = [max(0.0, v) for v in dense(layer.fc1.weight.tolist(), bias_of(layer.fc1).tolist(), squeezed)]
    gate = [sigmoid(v) for v in dense(layer.fc2.weight.tolist(), bias_of(layer.fc2).tolist(), hidden)]
    assert_matches(layer(x), scale_channels(image, gate))


def test_cbam_matches_hand_computation() -> None:
    layer = randomised(CBAM(4))
    x = tiny_input()
    image = grid(x)

    channel_gate = layer.channel

    def mlp(descriptor: list[float]) -> list[float]:
        hidden = dense(channel_gate.fc1.weight.tolist(), bias_of(channel_gate.fc1).tolist(), descriptor)
        hidden = [max(0.0, v) for v in hidden]
        return dense(channel_gate.fc2.weight.tolist(), bias_of(channel_gate.fc2).tolist(), hidden)

    from_average = mlp([spatial_mean(channel) for channel in image])
    from_maximum = mlp([spatial_max(channel) for channel in image])
    channel_weights = [sigmoid(a + m) for a, m in zip(from_average, from_maximum)]
    refined = scale_channels(image, channel_weights)

    mean_map = [[sum(refined[c][i][j] for c in range(4)) / 4 for j in range(3)] for i in range(3)]
    max_map = [[max(refined[c][i][j] for c in range(4)) for j in range(3)] for i in range(3)]
    kernel = layer.spatial.conv.weight[0].tolist()  # (2, 7, 7): [mean; max]
    assert len(kernel[0]) == 7
    bias = bias_of(layer.spatial.conv).item()

    def convolved(i: int, j: int) -> float:
        total = bias
        for index, pooled in enumerate((mean_map, max_map)):
            for di in range(-3, 4):
                for dj in range(-3, 4):
                    if 0 <= i + di < 3 and 0 <= j + dj < 3:  # zero padding of 3
                        total += kernel[index][di + 3][dj + 3] * pooled[i + di][j + dj]
        return total

    spatial_weights = [[sigmoid(convolved(i, j)) for j in range(3)] for i in range(3)]
    assert_matches(layer(x), scale_positions(refined, spatial_weights))


def test_eca_matches_hand_computation() -> None:
    layer = randomised(EfficientChannelAttention(4, kernel_size=3))
    assert layer.conv.bias is None, "ECA's 1-D conv has no bias"
    x = tiny_input()
    image = grid(x)
    descriptor = [spatial_mean(channel) for channel in image]
    kernel = layer.conv.weight[0, 0].tolist()
    gate = []
    for c in range(4):
        total = 0.0
        for offset in (-1, 0, 1):  # zero padding of 1 at both ends of the channel axis
            if 0 <= c + offset < 4:
                total += kernel[offset + 1] * descriptor[c + offset]
        gate.append(sigmoid(total))
    assert_matches(layer(x), scale_channels(image, gate))


# ---------------------------------------------------------------- sizes and the registry


@pytest.mark.parametrize(("channels", "hidden"), [(1, 1), (4, 4), (15, 8), (16, 8), (64, 8), (256, 16), (512, 32)])
def test_squeeze_excitation_hidden_width_is_never_zero(channels: int, hidden: int) -> None:
    assert squeeze_excitation_hidden(channels) == hidden
    for layer in (SqueezeExcitation(channels), CBAM(channels)):
        fc1 = layer.fc1 if isinstance(layer, SqueezeExcitation) else layer.channel.fc1
        assert fc1.out_channels == hidden
        output = layer(torch.randn(2, channels, 3, 3))
        assert output.shape == (2, channels, 3, 3)


@pytest.mark.parametrize(
    ("channels", "kernel"), [(4, 1), (16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (8192, 7)]
)
def test_eca_kernel_size_follows_the_paper_rule(channels: int, kernel: int) -> None:
    # Wang et al. 2020: k = |log2(C)/gamma + b/gamma| rounded to the nearest odd number, gamma=2, b=1
    assert eca_kernel_size(channels) == kernel
    layer = EfficientChannelAttention(channels)
    assert layer.conv.kernel_size == (kernel,)
    assert layer.conv.padding == (kernel // 2,)
    assert layer(torch.randn(1, channels, 2, 2)).shape == (1, channels, 2, 2)


def test_coordinate_attention_matches_hand_computation() -> None:
    layer = randomised(CoordinateAttention(4)).eval()  # batch norm with its (random) running statistics
    assert layer.norm.running_var is not None
    with torch.no_grad():
        layer.norm.running_var.abs_()
    assert layer.squeeze.out_channels == 8, "hidden width max(8, C // 32)"
    torch.manual_seed(7)
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64)  # H != W, so rows and columns cannot be swapped
    image = grid(x)
    height, width = 3, 2
    pooled = [[sum(image[c][i]) / width for i in range(height)] for c in range(4)]  # z_h: mean over columns
    pooled += [[sum(image[c][i][j] for i in range(height)) / height for j in range(width)] for c in range(4)]

    def hidden(position: list[float]) -> list[float]:
        values = dense(layer.squeeze.weight.tolist(), bias_of(layer.squeeze).tolist(), position)
        norm = layer.norm
        assert norm.running_mean is not None and norm.running_var is not None
        normed = [
            (v - norm.running_mean[k].item()) / math.sqrt(norm.running_var[k].item() + norm.eps) * norm.weight[k].item()
            + norm.bias[k].item()
            for k, v in enumerate(values)
        ]
        return [v * min(max(v + 3, 0.0), 6.0) / 6 for v in normed]  # hard-swish

    rows = [hidden([pooled[c][i] for c in range(4)]) for i in range(height)]
    columns = [hidden([pooled[4 + c][j] for c in range(4)]) for j in range(width)]
    gate_h = [
        [sigmoid(v) for v in dense(layer.height.weight.tolist(), bias_of(layer.height).tolist(), r)] for r in rows
    ]
    gate_w = [
        [sigmoid(v) for v in dense(layer.width.weight.tolist(), bias_of(layer.width).tolist(), k)] for k in columns
    ]
    expected = [
        [[image[c][i][j] * gate_w[j][c] * gate_h[i][c] for j in range(width)] for i in range(height)] for c in range(4)
    ]
    assert_matches(layer(x), expected)


def test_simam_matches_hand_computation() -> None:
    layer = SimAM(4)
    assert list(layer.parameters()) == [], "parameter-free"
    x = tiny_input()
    image = grid(x)
    expected = []
    for channel in image:
        values = [v for row in channel for v in row]
        mean = sum(values) / len(values)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        energy = [[(v - mean) ** 2 / (4 * (variance + 1e-4)) + 0.5 for v in row] for row in channel]
        expected.append([[v * sigmoid(e) for v, e in zip(row, energies)] for row, energies in zip(channel, energy)])
    assert_matches(layer(x), expected)


def test_registry_maps_every_short_name_to_its_class() -> None:
    assert {
        "none": NoWeighting,
        "scale": ChannelScaling,
        "spatial": SpatialAttention,
        "channel": SqueezeExcitation,
        "cbam": CBAM,
        "eca": EfficientChannelAttention,
        "coord": CoordinateAttention,
        "simam": SimAM,
    } == WEIGHTING_LAYERS
    for kind, cls in WEIGHTING_LAYERS.items():
        layer = create_weighting(kind, 8)
        assert type(layer) is cls and layer.kind == kind


def test_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'squeeze'") as error:
        create_weighting("squeeze", 8)
    message = str(error.value)
    assert "'squeeze'" in message
    for kind in KINDS:
        assert kind in message
