"""Model cards: one model's card as the Models page and ``fmw info`` show it (``model_card``), the
table of a directory of checkpoints (accuracy, weighting off, cost, training time and the command
that reproduces each) and the seed-to-seed spread of same-recipe runs.

Accuracies are recorded as fractions (0..1) or percents: ``percent_or_none`` reads either as a
percent, ``percent_text`` writes a fraction as a percent with two decimals."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from fmw.device import model_device
from fmw.errors import CheckpointError
from fmw.io import LoadedCheckpoint, load_checkpoint
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import ModelHandle, count_multiply_adds, count_parameters
from fmw.sites import find_sites

__all__ = [
    "ModelCard",
    "card_rows",
    "model_card",
    "percent_or_none",
    "percent_text",
    "render",
    "seed_noise",
    "training_command",
]


@dataclass(frozen=True)
class ModelCard:
    """What the Models page shows for one model; accuracies in percent, None when unknown."""

    name: str
    weighting: str
    parameters: int
    multiply_adds: int
    input_size: tuple[int, int]
    top1: float | None
    top1_weighting_off: float | None


def percent_or_none(value: object) -> float | None:
    """A recorded metric as a percent: a fraction (0..1) times 100, a larger number as it is;
    None for anything that is not a number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) * 100.0 if 0.0 <= value <= 1.0 else float(value)


def percent_text(value: object) -> str:
    """A fraction (0..1) written as a percent with two decimals ("88.51"); "n/a" for no number."""
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "n/a"


def model_card(loaded: ModelHandle, name: str) -> ModelCard:
    """One model's card.

    Args:
        loaded: any model, as ``fmw.load_model`` opens it.
        name: the name the card shows.

    Returns:
        Parameters, multiply-adds at the model's input size, the recorded accuracies in percent
        (fmw checkpoints only; None otherwise), and the weighting its checkpoint declares, else the
        kinds of the sites found in it.

    Examples:
        >>> import fmw
        >>> card = model_card(fmw.load_model("cbam"), "cbam")
        >>> card.weighting, card.parameters, card.input_size
        ('cbam', 575417, (32, 32))
        >>> card.top1 > card.top1_weighting_off  # test-split top-1 in percent, from the checkpoint's header
        True
    """
    weighting = loaded.weighting
    if weighting is None:
        example = torch.zeros(1, loaded.in_channels, *loaded.input_size, device=model_device(loaded.model))
        kinds = sorted({site.kind for site in find_sites(loaded.model, example)})
        weighting = f"{loaded.family}: {', '.join(kinds) or 'none'}"
    metrics = loaded.metrics
    return ModelCard(
        name=name,
        weighting=weighting,
        parameters=count_parameters(loaded.model),
        multiply_adds=count_multiply_adds(loaded.model, loaded.input_size, loaded.in_channels),
        input_size=loaded.input_size,
        top1=percent_or_none(metrics.get("test_top1")),
        top1_weighting_off=percent_or_none(metrics.get("test_top1_weighting_off")),
    )


def training_command(loaded: LoadedCheckpoint, out: str) -> str:
    """The ``python -m fmw train`` command line that reproduces a checkpoint, from its recipe."""
    recipe = loaded.metadata.recipe
    parts = [
        "python -m fmw train",
        f"--weighting {loaded.metadata.weighting}",
        f"--epochs {recipe.get('epochs')}",
        f"--batch-size {recipe.get('batch_size')}",
        f"--lr {recipe.get('learning_rate')}",
    ]
    optimizer = recipe.get("optimizer", "sgd")  # checkpoints from before the option trained with SGD
    parts.append(f"--optimizer {optimizer}")
    if optimizer == "muon":
        parts.append(f"--muon-lr {recipe.get('muon_lr')}")
    parts.append(f"--seed {recipe.get('seed')}")
    if list(recipe.get("widths", [])) != list(loaded.metadata.architecture.widths):
        parts.append("--widths " + " ".join(map(str, loaded.metadata.architecture.widths)))
    if recipe.get("bf16") is False:
        parts.append("--no-bf16")
    parts.append(f"--out {out}")
    return " ".join(parts)


def card_rows(checkpoints: list[LoadedCheckpoint], directory: str) -> list[str]:
    order = {kind: index for index, kind in enumerate(WEIGHTING_LAYERS)}
    rows = [
        (
            "| weighting | parameters | multiply-adds | test top-1 (%) | top-1, weighting off (%) "
            "| training time | machine | seed | command |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for loaded in sorted(checkpoints, key=lambda c: order.get(c.metadata.weighting, 99)):
        metrics = loaded.metadata.metrics
        name = Path(loaded.source).name
        minutes = metrics.get("train_seconds", 0) / 60
        rows.append(
            f"| {loaded.metadata.weighting} | {metrics.get('parameters', 0):,} | {metrics.get('multiply_adds', 0):,} "
            f"| {percent_text(metrics.get('test_top1'))} | {percent_text(metrics.get('test_top1_weighting_off'))} "
            f"| {minutes:.1f} min | {' '.join(str(metrics.get('machine', 'n/a')).split())} "
            f"| {loaded.metadata.recipe.get('seed')} "
            f"| `{training_command(loaded, f'{directory}/{name}')}` |"
        )
    return rows


def seed_noise(checkpoints: list[LoadedCheckpoint]) -> list[str]:
    """Mean, spread and range of test top-1 per weighting kind over checkpoints that differ only by seed."""
    by_kind: dict[str, list[LoadedCheckpoint]] = {}
    for loaded in checkpoints:
        by_kind.setdefault(loaded.metadata.weighting, []).append(loaded)
    lines = []
    for kind, group in by_kind.items():
        recorded = [c.metadata.metrics.get("test_top1") for c in group]
        scores = [s for s in recorded if isinstance(s, (int, float))]
        if len(scores) < 2:
            continue
        # a checkpoint without a recorded seed is left out of the list (None does not sort with ints)
        seeds = sorted(seed for c in group if isinstance(seed := c.metadata.recipe.get("seed"), int))
        lines.append(
            f"- `{kind}`, seeds {seeds}: mean {percent_text(statistics.mean(scores))}%, "
            f"standard deviation {100 * statistics.stdev(scores):.2f} points, "
            f"range {percent_text(min(scores))}-{percent_text(max(scores))}%"
        )
    return lines


def _load_all(directory: Path) -> list[LoadedCheckpoint]:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no .safetensors checkpoints there")
    return [load_checkpoint(path) for path in files]


def render(directory: Path, seeds_directory: Path | None = None) -> str:
    lines = card_rows(_load_all(directory), directory.as_posix())
    if seeds_directory is not None:
        noise = seed_noise(_load_all(seeds_directory))
        lines += ["", f"Seed-to-seed spread (checkpoints in `{seeds_directory.as_posix()}`):", "", *noise]
    return "\n".join(lines) + "\n"
