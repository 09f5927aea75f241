"""Tests of device choice: cuda, then mps, then cpu; the argument beats ``$FMW_DEVICE``, which
beats the automatic choice; devices that do not exist here are refused with what does."""

from __future__ import annotations

import pytest
import torch

from fmw import device as device_module
from fmw.device import ENVIRONMENT_VARIABLE, available_devices, select_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the named accelerators: ``machine(cuda=2, mps=True)``."""
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)

    def pretend(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(device_module, "_mps_available", lambda: mps)

    return pretend


@pytest.mark.parametrize(
    ("cuda", "mps", "order"),
    [(1, True, ["cuda", "mps", "cpu"]), (1, False, ["cuda", "cpu"]), (0, True, ["mps", "cpu"]), (0, False, ["cpu"])],
)
def test_automatic_choice_prefers_cuda_then_mps_then_cpu(machine, cuda: int, mps: bool, order: list[str]) -> None:
    machine(cuda=cuda, mps=mps)
    assert available_devices() == order
    assert select_device() == torch.device(order[0])
    assert select_device("auto") == torch.device(order[0])
    assert select_device(" AUTO ") == torch.device(order[0])


def test_environment_variable_overrides_the_automatic_choice(machine, monkeypatch) -> None:
    machine(cuda=1)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "cpu")
    assert select_device() == torch.device("cpu")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "auto")
    assert select_device() == torch.device("cuda")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "")
    assert select_device() == torch.device("cuda")


def test_argument_overrides_the_environment_variable(machine, monkeypatch) -> None:
    machine(cuda=2)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "cpu")
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "cuda")
    assert select_device("cpu") == torch.device("cpu")


def test_unknown_device_names_are_refused_with_the_choices(machine) -> None:
    machine(cuda=1)
    with pytest.raises(ValueError, match="unknown device 'gpu0'") as error:
        select_device("gpu0")
    assert str(error.value) == "unknown device 'gpu0'; use one of: auto, cuda, cpu (or e.g. cuda:1)"


def test_unavailable_device_from_the_argument_is_refused(machine) -> None:
    machine(cuda=0)
    with pytest.raises(ValueError, match="cuda") as error:
        select_device("cuda")
    message = str(error.value)
    assert "device 'cuda' (from the argument) is not available on this machine" in message
    assert "available: cpu" in message and "'auto'" in message


def test_unavailable_device_from_the_environment_is_refused(machine, monkeypatch) -> None:
    machine(cuda=1, mps=False)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "mps")
    with pytest.raises(ValueError, match=r"device 'mps' \(from the \$FMW_DEVICE\) is not available.*cuda, cpu"):
        select_device()


def test_a_cuda_index_beyond_the_devices_is_refused(machine) -> None:
    machine(cuda=2)
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist: this machine has 2 CUDA device\(s\)"):
        select_device("cuda:2")


def test_model_device_is_the_first_parameters_then_the_first_buffers_device() -> None:
    import itertools

    from torch import nn

    from fmw.device import model_device

    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.empty = nn.Sequential(nn.ReLU(), nn.Identity())
            self.buffered = nn.BatchNorm2d(3, affine=False)  # buffers only
            self.late = nn.Sequential(nn.Identity(), nn.Linear(2, 2, device="meta"))  # the first parameter

    models = [Nested(), nn.BatchNorm2d(3, affine=False, device="meta"), nn.ReLU(), nn.Sequential(nn.Linear(2, 2))]
    expected = ["meta", "meta", "cpu", "cpu"]
    for model, device in zip(models, expected, strict=True):
        reference = next(itertools.chain(model.parameters(), model.buffers()), None)
        assert model_device(model) == (reference.device if reference is not None else torch.device("cpu"))
        assert model_device(model).type == device
