"""What a checkpoint or a weighting kind costs: parameters, multiply-adds and gate multiplications
over the ``none`` network, and a checkpoint's metadata as text."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import torch

from fmw.io import CheckpointMetadata
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import NetConfig, build_model, count_multiply_adds, count_parameters
from fmw.sites import probe

MULTIPLY_ADDS_NOTE = (
    "multiply-adds: torch.utils.flop_counter.FlopCounterMode, which counts only convolutions, linear "
    "layers and matmuls (2 FLOPs = 1 multiply-add); pooling, sigmoids and the x * gate products are not in it."
)


GATE_NOTE = (
    "gate multiplications: the elementwise x * gate products of one forward pass, one per gated value "
    "and gate stage (CBAM has two stages), counted from the probe's records; pooling, the CBAM "
    "mean/max maps and activations are still not counted."
)


@dataclass(frozen=True)
class Cost:
    """What one network costs for one image of a given size."""

    weighting: str
    parameters: int
    multiply_adds: int
    gate_multiplications: int


def gate_multiplications(model: torch.nn.Module, input_size: tuple[int, int], in_channels: int) -> int:
    """Elementwise ``x * gate`` products of one forward pass on one image: every value entering a
    weighting site is multiplied once per gate stage (a spatial gate is broadcast over channels)."""
    result = probe(model, torch.zeros(1, in_channels, *input_size), maps=False)
    return sum(record.before.numel() * len(record.gates) for record in result.sites)


def measure(config: NetConfig, input_size: tuple[int, int] = (32, 32)) -> Cost:
    """Parameters, multiply-adds and gate multiplications of ``config``'s network for one image."""
    model = build_model(config).eval()
    return Cost(
        weighting=config.weighting,
        parameters=count_parameters(model),
        multiply_adds=count_multiply_adds(model, input_size, config.in_channels),
        gate_multiplications=gate_multiplications(model, input_size, config.in_channels),
    )


def _over(value: int, base: int) -> str:
    """``+N (P%)``: how much ``value`` exceeds ``base``, absolute and relative."""
    return f"{value - base:+,} ({100 * (value - base) / base:.3f}%)"


def overhead_table(config: NetConfig | None = None, input_size: tuple[int, int] = (32, 32)) -> str:
    """Markdown table of every weighting kind's cost, and its overhead over ``none``, for ``config``
    (the default network when None) with each kind switched in, on one ``input_size`` image."""
    config = config or NetConfig()
    costs = [measure(replace(config, weighting=kind), input_size) for kind in WEIGHTING_LAYERS]
    base = next(cost for cost in costs if cost.weighting == "none")
    height, width = input_size
    lines = [
        f"Cost of each weighting kind for one {height}x{width} image, network {config.to_json()}",
        "",
        (
            "| weighting | parameters | parameters over none | multiply-adds | multiply-adds over none "
            "| gate multiplications |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {cost.weighting} | {cost.parameters:,} | {_over(cost.parameters, base.parameters)} "
        f"| {cost.multiply_adds:,} | {_over(cost.multiply_adds, base.multiply_adds)} "
        f"| {cost.gate_multiplications:,} |"
        for cost in costs
    ]
    lines += ["", MULTIPLY_ADDS_NOTE, GATE_NOTE]
    return "\n".join(lines)


def _json_or_none(value: dict) -> str:
    return json.dumps(value, sort_keys=True) if value else "(none recorded)"


def describe_checkpoint(source: str, metadata: CheckpointMetadata) -> str:
    """The checkpoint's metadata and its network's cost, one ``label: value`` line each."""
    config = metadata.architecture
    cost = measure(config, metadata.input_size)
    base = measure(replace(config, weighting="none"), metadata.input_size)
    height, width = metadata.input_size
    rows = [
        ("checkpoint", source),
        ("weighting", metadata.weighting),
        ("architecture", config.to_json()),
        (f"classes ({len(metadata.class_names)})", ", ".join(metadata.class_names)),
        ("input size", f"{height}x{width} (height x width)"),
        (
            "normalisation",
            "mean " + ", ".join(f"{v:g}" for v in metadata.mean) + "; std " + ", ".join(f"{v:g}" for v in metadata.std),
        ),
        ("metrics", _json_or_none(metadata.metrics)),
        ("recipe", _json_or_none(metadata.recipe)),
        ("code version", metadata.code_version or "(not recorded)"),
        ("format version", str(metadata.format_version)),
        ("parameters", f"{cost.parameters:,} ({_over(cost.parameters, base.parameters)} over weighting none)"),
        (
            "multiply-adds",
            (
                f"{cost.multiply_adds:,} per {height}x{width} image "
                f"({_over(cost.multiply_adds, base.multiply_adds)} over weighting none)"
            ),
        ),
        ("gate multiplications", f"{cost.gate_multiplications:,} per {height}x{width} image"),
    ]
    label_width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{label_width}}  {value}" for label, value in rows]
    return "\n".join([*lines, "", MULTIPLY_ADDS_NOTE, GATE_NOTE])
