"""Shared fixtures: small fmw checkpoints with random weights, made fresh by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmw.io import CIFAR10_CLASSES, CheckpointMetadata, save_checkpoint
from fmw.models import build_model
from fmw.settings import default_data_path

CIFAR_CLASSES = CIFAR10_CLASSES
REPO = Path(__file__).resolve().parents[1]  # the checkout the tests run from
CIFAR_ZIP = default_data_path()


def make_checkpoint(path: Path, weighting: str = "channel", seed: int = 0, **config) -> Path:
    """Write an fmw checkpoint with random (seeded) weights and CIFAR-10 class names."""
    torch.manual_seed(seed)
    model = build_model(weighting=weighting, **config).eval()
    metadata = CheckpointMetadata(
        architecture=model.config,
        class_names=CIFAR_CLASSES[: model.config.num_classes],
        metrics={"note": "random weights made by a test"},
        recipe={"seed": seed},
    )
    return save_checkpoint(path, model, metadata)


@pytest.fixture
def checkpoint_factory(tmp_path):
    def factory(weighting: str = "channel", name: str | None = None, **kwargs) -> Path:
        return make_checkpoint(tmp_path / (name or f"{weighting}.safetensors"), weighting, **kwargs)

    return factory
