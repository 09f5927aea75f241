"""The checkpoints shipped in checkpoints/: each loads, its metadata validates, its card row in
checkpoints/README.md matches it, and (where the shared CIFAR-10 zip exists) its measured test
accuracy, with and without weighting, is within 0.1 points of the card."""

from __future__ import annotations

import re

import pytest
import torch

from fmw.analysis.evaluation import accuracy_report
from fmw.io import load_checkpoint, load_split
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import count_multiply_adds, count_parameters
from tests.conftest import CIFAR_CLASSES, CIFAR_ZIP, REPO

CHECKPOINTS = REPO / "checkpoints"
KINDS = list(WEIGHTING_LAYERS)


def card_rows() -> dict[str, list[str]]:
    """Cells of each row of the model-card table, keyed by weighting kind."""
    rows = {}
    for line in (CHECKPOINTS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in KINDS:
            rows[cells[0]] = cells
    return rows


def test_one_checkpoint_per_weighting_kind_is_shipped():
    assert sorted(path.stem for path in CHECKPOINTS.glob("*.safetensors")) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_checkpoint_loads_and_matches_its_card(kind):
    loaded = load_checkpoint(CHECKPOINTS / f"{kind}.safetensors")
    metadata = loaded.metadata
    assert metadata.weighting == kind and metadata.class_names == CIFAR_CLASSES
    assert metadata.input_size == (32, 32)
    assert metadata.recipe["seed"] == 0 and metadata.recipe["weighting"] == kind
    metrics = metadata.metrics
    assert metrics["parameters"] == count_parameters(loaded.model)
    assert metrics["multiply_adds"] == count_multiply_adds(loaded.model)
    row = card_rows()[kind]
    assert row[1] == f"{metrics['parameters']:,}" and row[2] == f"{metrics['multiply_adds']:,}"
    assert float(row[3]) == pytest.approx(100 * metrics["test_top1"], abs=0.005)
    assert float(row[4]) == pytest.approx(100 * metrics["test_top1_weighting_off"], abs=0.005)
    assert re.search(rf"--weighting {kind} .*--seed 0 --out checkpoints/{kind}\.safetensors", row[8])


@pytest.fixture(scope="module")
def cifar_test_split():
    if not CIFAR_ZIP.is_file():
        pytest.skip(f"CIFAR-10 (JPEG) zip not found at {CIFAR_ZIP}; accuracy cannot be re-measured")
    return load_split(CIFAR_ZIP, "test")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_shipped_checkpoint_accuracy_reproduces_its_card(kind, cifar_test_split):
    loaded = load_checkpoint(CHECKPOINTS / f"{kind}.safetensors")
    model = loaded.model.to(memory_format=torch.channels_last)
    report = accuracy_report(model, cifar_test_split, loaded.metadata.mean, loaded.metadata.std, torch.device("cpu"))
    row = card_rows()[kind]
    assert report.images == 10_000
    assert abs(100 * report.weighting_on.top1 - float(row[3])) <= 0.1
    assert abs(100 * report.weighting_off.top1 - float(row[4])) <= 0.1
