"""Tests of the probe's steady state (a model probed before, so only the modules that made its
products are watched, and their children that make none run unwatched): the same records as a
discovering pass, a static gate computed in such a child still a static scale, the mode taken
off the stack and put back (also when the child raises), a module that makes products called
from within such a child still watched, a discovering observation inside a steady one still
seeing every operation, and a forward the user set on a module kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmw.sites import find_sites, override_gates, probe


class Scaler(nn.Module):
    """A static gate made of modules: a learned vector through a sigmoid, no input needed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, channels).reshape(1, channels, 1, 1))
        self.squash = nn.Sigmoid()

    def forward(self) -> torch.Tensor:
        return self.squash(self.weight)


class Excite(nn.Module):
    """A channel gate from the input, computed by a child made of modules (pooling and an MLP)."""

    def __init__(self, channels: int, fail: bool = False) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 4, 1), nn.ReLU(), nn.Conv2d(4, channels, 1), nn.Sigmoid()
        )
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("boom inside a gate's child")
        return self.mlp(x)


class Block(nn.Module):
    """``x * excite(x) * scaler()``: an input-dependent channel gate, then a static scale, both
    computed in children the steady state does not watch."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.excite = Excite(channels)
        self.scaler = Scaler(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x * self.excite(x)
        return torch.relu(x * self.scaler())


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).mean(dim=(2, 3)))


def images(seed: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def assert_nothing_installed(model: nn.Module) -> None:
    assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode was left on the stack"
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name!r}"
        assert "forward" not in vars(module), f"forward wrapper left on {name!r}"


def test_steady_probes_record_what_the_discovering_probe_recorded() -> None:
    model = Net().eval()
    x = images(0)
    discovered = [(site.name, site.kind, [stage.static for stage in site.stages]) for site in find_sites(model, x)]
    first = probe(model, x)  # the model is known now: this and the next watch only the makers
    second = probe(model, images(1))
    again = probe(model, x)
    steady = [(site.name, site.kind, [stage.static for stage in site.stages]) for site in find_sites(model)]
    assert steady == discovered
    # the static vector stays a static stage in the steady state, though its sigmoid ran unwatched
    assert [static for _, _, statics in steady for static in statics] == [False, True]
    assert [record.name for record in first.sites] == [record.name for record in second.sites]
    for a, b in zip(first.sites, again.sites, strict=True):
        assert torch.equal(a.before, b.before) and torch.equal(a.after, b.after)
        for stage_a, stage_b in zip(a.stages, b.stages, strict=True):
            assert torch.equal(stage_a.gate, stage_b.gate)
    with torch.no_grad():
        expected = model.block(x)
    assert torch.equal(torch.relu(again.sites[-1].after), expected)
    assert_nothing_installed(model)


def test_a_child_that_raises_while_unwatched_leaves_nothing_installed() -> None:
    model = Net().eval()
    x = images(2)
    probe(model, x)  # discovered: the next probe runs the gate's MLP unwatched
    model.block.excite.fail = True
    with pytest.raises(RuntimeError, match="boom inside a gate's child"):
        probe(model, x)
    assert_nothing_installed(model)
    with pytest.raises(RuntimeError, match="boom inside a gate's child"), override_gates(model):
        model(x)
    assert_nothing_installed(model)
    model.block.excite.fail = False
    assert len(probe(model, x).sites) == 1
    assert_nothing_installed(model)


def test_a_model_discovered_inside_a_steady_observation_is_seen_whole() -> None:
    outer, inner = Net().eval(), Net().eval()
    x = images(3)
    probe(outer, x)  # outer is known: override_gates watches only its makers

    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.outer, self.inner = outer, inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.outer(x) + self.inner(x)

    both = Both().eval()
    with override_gates(outer):
        switched_off = probe(both, x)  # the first probe of ``both``: every operation watched
    kinds = {record.name: record.kind for record in switched_off.sites}
    assert set(kinds) == {"outer.block", "inner.block"}
    assert kinds["outer.block"] == kinds["inner.block"]
    assert_nothing_installed(both)


class Squeeze(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(mlp(mean(x)))``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, 4, 1), nn.ReLU(), nn.Conv2d(4, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)))


class Detour(nn.Module):
    """A child with no module of products below it, which calls one registered elsewhere."""

    def __init__(self, squeeze: Squeeze) -> None:
        super().__init__()
        self.smooth = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.held = {"squeeze": squeeze}  # not a child: the model holds it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze: Squeeze = self.held["squeeze"]
        return squeeze(self.smooth(x))


class Spatial(nn.Module):
    def __init__(self, squeeze: Squeeze) -> None:
        super().__init__()
        self.detour = Detour(squeeze)
        self.conv = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.detour(x)
        return y * torch.sigmoid(self.conv(y))


class Tangled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = Squeeze()
        self.spatial = Spatial(self.squeeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.stem(x))


def test_a_module_of_products_called_from_a_quiet_child_is_still_watched() -> None:
    model = Tangled().eval()
    x = images(4)
    discovered = probe(model, x)
    assert [record.name for record in discovered.sites] == ["squeeze", "spatial"]
    steady = probe(model, x)
    assert [(record.name, record.kind) for record in steady.sites] == [
        (record.name, record.kind) for record in discovered.sites
    ]
    for a, b in zip(discovered.sites, steady.sites, strict=True):
        assert torch.equal(a.after, b.after)
    assert_nothing_installed(model)


def test_a_forward_the_user_set_on_a_module_is_kept() -> None:
    model = Net().eval()
    x = images(5)
    probe(model, x)
    calls = []
    original = model.block.excite.mlp.forward

    def counted(*args: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(*args)

    model.block.excite.mlp.forward = counted  # type: ignore[method-assign]
    assert len(probe(model, x).sites) == 1
    assert calls == [1]
    assert model.block.excite.mlp.forward is counted


class Overwrites(nn.Module):
    """A channel gate whose map, gate and product the module overwrites in place right after the
    product, in its own frame: the records must hold the values at the product."""

    def __init__(self, which: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Conv2d(8, 8, 1)
        self.which = which

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))
        y = x * gate
        if self.which == "map":
            x.add_(1.0)
        elif self.which == "gate":
            gate.zero_()
        else:
            y.relu_()
        return y + x.mean() + gate.mean()


@pytest.mark.parametrize("which", ["map", "gate", "product"])
def test_tensors_overwritten_after_the_product_are_recorded_as_they_were(which: str) -> None:
    model = Overwrites(which).eval()
    x = images(6)
    with torch.no_grad():
        conv = model.conv(x)
        gate = torch.sigmoid(model.fc(conv.mean(dim=(2, 3), keepdim=True)))
        product = conv * gate
    for _ in range(3):  # discovering, then steady
        (record,) = probe(model, x).sites
        assert torch.equal(record.before, conv)
        assert torch.equal(record.stages[0].gate, gate)
        assert torch.equal(record.after, product)
    assert_nothing_installed(model)


def test_a_thread_running_the_model_plainly_is_untouched_while_another_probes_it() -> None:
    """The forward wrappers are shared by every thread for the probe's duration; for a thread that
    is not probing they pass straight through: its outputs stay bit-identical."""
    import threading

    model = Net().eval()
    x = images(7)
    probe(model, x)  # steady from now on: the next probes wrap forwards
    with torch.no_grad():
        expected = model(x)
    stop, errors, outputs = threading.Event(), [], []

    def plain() -> None:
        try:
            while not stop.is_set():
                with torch.no_grad():
                    outputs.append(torch.equal(model(x), expected))
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=plain)
    worker.start()
    try:
        records = [probe(model, images(8 + n)) for n in range(30)]
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not errors and outputs and all(outputs)
    assert all(len(result.sites) == 1 for result in records)
    assert_nothing_installed(model)


def test_a_copy_made_while_forwards_are_wrapped_runs_its_own_forward() -> None:
    """``override_gates`` keeps the forward wrappers on for its whole block; a model deep-copied in it
    runs its own forward (weighting on, its own weights), before and after the block."""
    import copy

    model = Net().eval()
    x = images(9)
    probe(model, x)  # steady: override_gates wraps the forwards of the modules that made products
    with torch.no_grad():
        expected = model(x)
    with override_gates(model), torch.no_grad():
        off = model(x)
        twin = copy.deepcopy(model)
        with torch.no_grad():
            model.block.conv.weight.add_(1.0)  # the original changes; the copy must not follow it
        inside = twin(x)
    assert not torch.equal(off, expected)
    assert torch.equal(inside, expected)
    with torch.no_grad():
        assert torch.equal(twin(x), expected)
    assert_nothing_installed(model)
    for name, module in twin.named_modules():
        forward = vars(module).get("forward")
        assert forward is None or getattr(forward, "__self__", None) is module, f"{name} runs another's forward"
