"""Model cards: the table and the seed-noise summary come from the checkpoints' own metadata."""

from __future__ import annotations

import statistics

import torch

from fmw.analysis.cards import training_command
from fmw.cli.cards import main as cards_main
from fmw.io import CheckpointMetadata, load_checkpoint, save_checkpoint
from fmw.models import build_model


def write(path, weighting: str, seed: int, top1: float, off: float, **recipe) -> None:
    torch.manual_seed(seed)
    model = build_model(weighting=weighting, widths=(8, 8, 8))
    metadata = CheckpointMetadata(
        architecture=model.config,
        class_names=[str(c) for c in range(10)],
        metrics={
            "test_top1": top1,
            "test_top1_weighting_off": off,
            "train_seconds": 600.0,
            "parameters": 1234,
            "multiply_adds": 5678,
            "machine": "test machine",
        },
        recipe={
            "epochs": 10,
            "batch_size": 512,
            "learning_rate": 0.4,
            "seed": seed,
            "widths": [8, 8, 8],
            "bf16": True,
            **recipe,
        },
    )
    save_checkpoint(path, model, metadata)


def test_cards_table_and_seed_noise(tmp_path, capsys):
    shipped, seeds = tmp_path / "shipped", tmp_path / "seeds"
    write(shipped / "eca.safetensors", "eca", 0, 0.9123, 0.5012)
    write(shipped / "none.safetensors", "none", 0, 0.9001, 0.9001)
    for seed, top1 in zip((0, 1, 2), (0.9123, 0.9101, 0.9150)):
        write(seeds / f"eca-{seed}.safetensors", "eca", seed, top1, 0.5)
    assert cards_main([str(shipped), "--seeds", str(seeds)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["none", "eca"]  # registry order
    eca = rows[1]
    assert "| 91.23 | 50.12 |" in eca and "10.0 min" in eca and "test machine" in eca
    assert (
        "--weighting eca --epochs 10 --batch-size 512 --lr 0.4 --optimizer sgd --seed 0 "
        f"--out {shipped.as_posix()}/eca.safetensors" in eca
    )
    spread = 100 * statistics.stdev([0.9123, 0.9101, 0.9150])
    assert f"standard deviation {spread:.2f} points" in printed
    assert "seeds [0, 1, 2]" in printed and "range 91.01-91.50%" in printed


def test_cards_reports_an_empty_directory(tmp_path, capsys):
    assert cards_main([str(tmp_path)]) == 2
    assert "no .safetensors checkpoints" in capsys.readouterr().err


def test_training_command_names_the_optimizer(tmp_path):
    path = tmp_path / "cbam.safetensors"
    write(path, "cbam", 3, 0.9, 0.5, optimizer="muon", muon_lr=0.3)
    command = training_command(load_checkpoint(path), "checkpoints/cbam.safetensors")
    assert command == (
        "python -m fmw train --weighting cbam --epochs 10 --batch-size 512 --lr 0.4 --optimizer muon "
        "--muon-lr 0.3 --seed 3 --out checkpoints/cbam.safetensors"
    )
