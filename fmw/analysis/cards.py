"""The model-card table of a directory of checkpoints (accuracy, weighting off, cost, training time
and the command that reproduces each), and the seed-to-seed spread of same-recipe runs."""

from __future__ import annotations

import statistics
from pathlib import Path

from fmw.errors import CheckpointError
from fmw.io import LoadedCheckpoint, load_checkpoint
from fmw.layers import WEIGHTING_LAYERS


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


def _percent(value: object) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "n/a"


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
            f"| {_percent(metrics.get('test_top1'))} | {_percent(metrics.get('test_top1_weighting_off'))} "
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
            f"- `{kind}`, seeds {seeds}: mean {_percent(statistics.mean(scores))}%, "
            f"standard deviation {100 * statistics.stdev(scores):.2f} points, "
            f"range {_percent(min(scores))}-{_percent(max(scores))}%"
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
