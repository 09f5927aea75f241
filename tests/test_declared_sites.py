"""Sites declared on modules (``fmw.declare_site``): a gate fmw cannot see by computation (applied
through NumPy here) recorded with its layout, a declared site without a gate, an instance or a
class declared, forgetting a declaration, a wrong gate refused in words, and fmw's own ``none``
layer shown through the same declaration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import fmw
from fmw.errors import FMWError
from fmw.models import build_model
from fmw.sites import declare_site, forget_site, override_gates, probe


class NumpyGate(nn.Module):
    """Squeeze-and-excitation whose product is made by NumPy: no torch multiplication to observe."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.numpy() * self.gate(x).numpy())


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.attend = NumpyGate()
        self.other = NumpyGate()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.other(self.attend(self.stem(x))).mean(dim=(2, 3)))


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(seed))


def declared_gate(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    assert isinstance(module, NumpyGate)
    return module.gate(inputs[0])


@pytest.fixture(autouse=True)
def forget_declarations() -> Iterator[None]:
    yield
    forget_site(NumpyGate)


def test_a_gate_applied_outside_torch_is_found_only_when_declared() -> None:
    model, x = Net().eval(), images()
    assert probe(model, x).sites == []
    declare_site(NumpyGate, kind="channel", gate=declared_gate)
    for _ in range(2):  # the first probe discovers, the second runs in the steady state
        result = probe(model, x)
        assert [(record.name, record.kind) for record in result.sites] == [("attend", "channel"), ("other", "channel")]
        with torch.no_grad():
            stem = model.stem(x)
            gate = model.attend.gate(stem)
            after = model.attend(stem)
        first = result.sites[0]
        assert [(stage.name, stage.layout) for stage in first.stages] == [("channel", "channel")]
        assert torch.equal(first.before, stem) and torch.equal(first.after, after)
        assert torch.equal(first.stages[0].gate, gate)
    assert fmw.declare_site is declare_site


def test_an_instance_declared_without_a_gate_shows_its_two_sides_only() -> None:
    model, x = Net().eval(), images(1)
    declare_site(model.other)
    (record,) = probe(model, x).sites
    assert (record.name, record.kind, record.stages) == ("other", "declared", [])
    forget_site(model.other)
    assert probe(model, x).sites == []


def test_declared_gates_are_shown_not_replaced() -> None:
    model, x = Net().eval(), images(2)
    declare_site(NumpyGate, kind="channel", gate=declared_gate)
    with torch.no_grad():
        expected = model(x)
    with override_gates(model), torch.no_grad():
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("returned", [torch.ones(3), "a string", None])
def test_a_declared_gate_that_is_not_one_is_refused_in_words(returned: object) -> None:
    model = Net().eval()
    declare_site(NumpyGate, gate=lambda module, inputs, output: returned)  # type: ignore[arg-type,return-value]
    with pytest.raises(FMWError, match=r"gate declared for NumpyGate .* is not a gate of its input \(2, 8, 10, 10\)"):
        probe(model, images(3))


def test_only_modules_can_be_declared() -> None:
    with pytest.raises(TypeError, match=r"takes an nn\.Module or an nn\.Module class, not int"):
        declare_site(3)  # type: ignore[arg-type]


def test_fmws_none_layer_is_a_declared_site_without_a_gate() -> None:
    model = build_model(weighting="none", stem_width=8, widths=(8, 16, 32)).eval()
    records = probe(model, torch.randn(1, 3, 32, 32)).sites
    assert len(records) == 3
    assert all(record.kind == "none" and record.stages == [] for record in records)
    assert all(torch.equal(record.before, record.after) for record in records)
