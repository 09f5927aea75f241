"""Tests of the probe and of ``override_gates``: bit-exact records checked against independent
hooks, forward order, hook removal (also on error), two threads at once, torchvision's SE
modules, tensors kept on the device, and gates switched off matching a model without weighting."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torchvision.models import mobilenet_v3_small
from torchvision.ops import SqueezeExcitation as TorchvisionSqueezeExcitation

from fmw.layers import WEIGHTING_LAYERS, SpatialAttention, SqueezeExcitation
from fmw.models import build_model
from fmw.sites import ProbeResult, override_gates, probe

KINDS = list(WEIGHTING_LAYERS)
SMALL: dict[str, Any] = {"stem_width": 8, "widths": (8, 16, 32)}


def small_model(kind: str, seed: int = 0) -> nn.Module:
    """A small fmw model in eval mode with every parameter random (scale weights are not 1)."""
    torch.manual_seed(seed)
    model = build_model(weighting=kind, **SMALL)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model.eval()


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class Recorder:
    """Independent forward hooks that copy what each named module received and returned."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.order: list[str] = []
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(self.hook(name)) for name in names]

    def hook(self, name: str):
        def record(module, inputs, output) -> None:
            self.inputs[name] = inputs[0].detach().clone()
            self.outputs[name] = output.detach().clone()
            self.order.append(name)

        return record

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks, f"forward hook left on {name!r}"
        assert not module._forward_pre_hooks, f"forward pre-hook left on {name!r}"
        assert "forward" not in vars(module), f"forward wrapper left on {name!r}"


def probe_with_recorder(model: nn.Module, x: torch.Tensor, names: list[str]) -> tuple[ProbeResult, Recorder]:
    """Probe ``model`` while independent hooks record the named modules in the same pass."""
    recorder = Recorder(model, names)
    try:
        result = probe(model, x)
    finally:
        recorder.remove()
    assert_no_hooks(model)
    return result, recorder


def assert_same_records(result: ProbeResult, reference: ProbeResult) -> None:
    assert torch.equal(result.logits, reference.logits)
    assert result.names == reference.names
    for record, expected in zip(result.sites, reference.sites):
        assert torch.equal(record.before, expected.before), record.name
        assert torch.equal(record.after, expected.after), record.name
        assert record.gates.keys() == expected.gates.keys()
        for stage in record.gates:
            assert torch.equal(record.gates[stage], expected.gates[stage]), (record.name, stage)


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("kind", KINDS)
def test_records_are_bit_exact_against_independent_hooks(kind: str) -> None:
    model = small_model(kind)
    x = images(1)
    names = [f"stages.{i}.weighting" for i in range(3)]
    result, recorder = probe_with_recorder(model, x, names)

    assert result.names == names
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
    for record in result.sites:
        assert record.kind == kind
        assert torch.equal(record.after, recorder.outputs[record.name])
        assert torch.equal(record.before, recorder.inputs[record.name])
        assert not record.after.requires_grad and record.after.device.type == "cpu"
        # the layer's maths, recomputed from what was recorded
        recomputed = record.before
        for gate in record.gates.values():
            recomputed = recomputed * gate
        assert torch.equal(record.after, recomputed)
        assert len(record.gates) == {"none": 0, "cbam": 2, "coord": 2}.get(kind, 1)


class InPlaceAfterSite(nn.Module):
    """Overwrites, in place, both the tensor a site received and the one it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.site = SqueezeExcitation(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        y = self.site(h)
        h.relu_()
        y.mul_(-3.0)
        return (y + h).mean(dim=(2, 3))


def test_records_survive_later_in_place_operations() -> None:
    torch.manual_seed(0)
    model = InPlaceAfterSite().eval()
    x = images(2)
    result = probe(model, x)
    record = result.site("site")
    with torch.no_grad():
        h = model.conv(x)
        expected_after = model.site(h)
    assert torch.equal(record.before, h)
    assert (record.before < 0).any(), "the ReLU applied later must not show in `before`"
    assert torch.equal(record.after, expected_after)


# ---------------------------------------------------------------- order


class RegisteredInReverse(nn.Module):
    """Registers its sites in the opposite order to the one it runs them in."""

    def __init__(self) -> None:
        super().__init__()
        self.last = SqueezeExcitation(4)
        self.middle = SpatialAttention(4)
        self.first = SqueezeExcitation(4)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.last(self.middle(self.first(self.conv(x))))
        return self.head(h.mean(dim=(2, 3)))


def test_sites_are_reported_in_forward_order() -> None:
    torch.manual_seed(0)
    model = RegisteredInReverse().eval()
    assert [name for name, _ in model.named_children()][:3] == ["last", "middle", "first"]
    result = probe(model, images(3))
    assert result.names == ["first", "middle", "last"]
    assert [record.kind for record in result.sites] == ["channel", "spatial", "channel"]
    assert torch.equal(result.site("first").after, result.site("middle").before)
    assert torch.equal(result.site("middle").after, result.site("last").before)


def test_only_the_requested_sites_are_recorded_and_unknown_names_refused() -> None:
    model = small_model("eca")
    result = probe(model, images(4), sites=["stages.2.weighting", "stages.0.weighting"])
    assert result.names == ["stages.0.weighting", "stages.2.weighting"]
    with pytest.raises(KeyError, match=r"'stages.9.weighting'.*stages.0.weighting"):
        probe(model, images(4), sites=["stages.9.weighting"])
    with pytest.raises(KeyError, match="no weighting site named 'missing'"):
        result.site("missing")


# ---------------------------------------------------------------- hook hygiene


class FailsAfterFirstSite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.first = SqueezeExcitation(4)
        self.second = SpatialAttention(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.first(self.conv(x))
        raise RuntimeError("boom inside forward")


def test_hooks_are_removed_after_a_successful_call() -> None:
    model = small_model("cbam")
    probe(model, images(5))
    assert_no_hooks(model)


def test_hooks_are_removed_when_forward_raises() -> None:
    model = FailsAfterFirstSite().eval()
    with pytest.raises(RuntimeError, match="boom inside forward"):
        probe(model, images(6))
    assert_no_hooks(model)
    with pytest.raises(RuntimeError, match="boom inside forward"), override_gates(model):
        model(images(6))
    assert_no_hooks(model)


def test_bad_images_are_refused_with_the_shape_expected() -> None:
    model = small_model("none")
    with pytest.raises(ValueError, match=r"4-D tensor \(N, C, H, W\), got \(3, 16, 16\)"):
        probe(model, torch.zeros(3, 16, 16))
    assert_no_hooks(model)


# ---------------------------------------------------------------- threads


def test_two_threads_probing_one_model_get_their_own_records() -> None:
    model = small_model("cbam")
    inputs = {0: images(10, n=1), 1: images(11, n=3)}
    references = {key: probe(model, x) for key, x in inputs.items()}
    assert not torch.equal(references[0].sites[0].after[0], references[1].sites[0].after[0])
    rounds = 15
    barrier = threading.Barrier(2)
    results: dict[int, list[ProbeResult]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def work(key: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                results[key].append(probe(model, inputs[key]))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(key,)) for key in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for key, found in results.items():
        assert len(found) == rounds
        for result in found:
            assert_same_records(result, references[key])
    assert_no_hooks(model)


# ---------------------------------------------------------------- torchvision


def test_torchvision_mobilenet_squeeze_excitation_sites() -> None:
    torch.manual_seed(0)
    model = mobilenet_v3_small(weights=None).eval()
    se_names = [name for name, m in model.named_modules() if isinstance(m, TorchvisionSqueezeExcitation)]
    assert len(se_names) == 9
    x = images(7, n=1, size=64)
    result, recorder = probe_with_recorder(model, x, se_names)

    assert len(result.sites) == len(se_names)
    assert result.names == recorder.order
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
    for record in result.sites:
        assert record.kind == "channel"
        assert torch.equal(record.after, recorder.outputs[record.name])
        gate = record.gates["channel"]
        assert gate.shape == (1, record.before.shape[1], 1, 1)
        assert gate.min() >= 0 and gate.max() <= 1  # hardsigmoid
        assert torch.equal(record.after, record.before * gate)


# ---------------------------------------------------------------- devices


def test_keep_on_device_leaves_tensors_where_the_model_ran() -> None:
    model = small_model("channel").to("meta")  # a device other than the CPU, shapes only
    result = probe(model, images(8), keep_on_device=True)
    tensors = [result.logits] + [t for r in result.sites for t in (r.before, r.after, *r.gates.values())]
    assert {t.device.type for t in tensors} == {"meta"}
    assert result.logits.shape == (2, 10)
    assert result.site("stages.1.weighting").gates["channel"].shape == (2, 16, 1, 1)
    assert_no_hooks(model)


def test_default_copies_to_the_cpu_and_keep_on_device_copies_too() -> None:
    model = small_model("spatial")
    x = images(9)
    on_cpu = probe(model, x)
    kept = probe(model, x, keep_on_device=True)
    assert_same_records(kept, on_cpu)
    kept.sites[0].after.zero_()
    assert not torch.equal(kept.sites[0].after, on_cpu.sites[0].after), "records must not share storage"


# ---------------------------------------------------------------- gates only


class InPlaceChannelGate(nn.Module):
    """A conv, then a channel gate applied in place (``x.mul_(g)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        gate = torch.sigmoid(self.gate(x.mean(dim=(2, 3)))).view(x.shape[0], 8, 1, 1)
        return x.mul_(gate).mean(dim=(2, 3))


@pytest.mark.parametrize("case", ["cbam", "spatial", "none", "in place"])
def test_a_probe_without_maps_records_the_same_gates_and_only_the_shapes_of_the_maps(case: str) -> None:
    model = InPlaceChannelGate().eval() if case == "in place" else small_model(case)
    x = images(12)
    full = probe(model, x)
    gates_only = probe(model, x, maps=False)
    assert torch.equal(gates_only.logits, full.logits)
    assert gates_only.names == full.names and len(full.sites) >= 1
    for lean, whole in zip(gates_only.sites, full.sites, strict=True):
        assert lean.kind == whole.kind
        assert lean.gates.keys() == whole.gates.keys()
        for stage, gate in lean.gates.items():
            assert gate.device.type == "cpu" and torch.equal(gate, whole.gates[stage]), (lean.name, stage)
        for meta, real in ((lean.before, whole.before), (lean.after, whole.after)):
            assert meta.is_meta and meta.shape == real.shape and meta.dtype == real.dtype
    assert_no_hooks(model)


def test_a_probe_without_maps_keeps_none_of_the_models_feature_maps_alive() -> None:
    model = small_model("channel")
    site = model.get_submodule("stages.1.weighting")
    storages: list[StorageWeakRef] = []  # of the product the model went on with, pass by pass
    handle = site.register_forward_hook(
        lambda module, inputs, output: storages.append(StorageWeakRef(output.untyped_storage()))
    )
    try:
        held = probe(model, images(13))
        lean = probe(model, images(13), maps=False)
    finally:
        handle.remove()
    assert not storages[0].expired(), "a full probe holds the product (its after is the model's own tensor)"
    assert storages[1].expired(), "probe(..., maps=False) must not hold the product the model went on with"
    assert held.site("stages.1.weighting").after.shape == lean.site("stages.1.weighting").after.shape
    assert lean.site("stages.1.weighting").after.is_meta


# ---------------------------------------------------------------- override_gates


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "none"])
def test_gates_of_one_match_the_model_without_weighting(kind: str) -> None:
    model = small_model(kind)
    plain = build_model(weighting="none", **SMALL).eval()
    incompatible = plain.load_state_dict(model.state_dict(), strict=False)
    assert not incompatible.missing_keys
    assert all(".weighting." in key for key in incompatible.unexpected_keys)
    x = images(12)
    with torch.no_grad():
        weighted = model(x)
        without = plain(x)
        with override_gates(model) as sites:
            switched_off = model(x)
            inside = probe(model, x)
    assert [site.name for site in sites] == [f"stages.{i}.weighting" for i in range(3)]
    assert not torch.equal(weighted, without), "the weighting must matter for this test to mean anything"
    assert torch.equal(switched_off, without)
    for record in inside.sites:
        assert torch.equal(record.after, record.before)
        assert all(torch.equal(gate, torch.ones_like(gate)) for gate in record.gates.values())
    assert_no_hooks(model)
    with torch.no_grad():
        assert torch.equal(model(x), weighted), "the override must end with the block"


def test_override_one_stage_of_one_site() -> None:
    model = small_model("cbam")
    x = images(13)
    with override_gates(model, {"stages.1.weighting": {"spatial": 0.5}}):
        result = probe(model, x)
    overridden = result.site("stages.1.weighting")
    assert torch.equal(overridden.gates["spatial"], torch.full_like(overridden.gates["spatial"], 0.5))
    channel = overridden.gates["channel"]
    assert not torch.equal(channel, torch.ones_like(channel)), "the channel stage keeps its own gate"
    assert torch.equal(overridden.after, overridden.before * channel * 0.5)
    untouched = result.site("stages.0.weighting").gates["spatial"]
    assert not torch.equal(untouched, torch.full_like(untouched, 0.5)), "other sites keep their gates"
    assert_no_hooks(model)


def test_override_refuses_unknown_sites() -> None:
    model = small_model("eca")
    with pytest.raises(KeyError, match=r"'nowhere'.*stages.0.weighting"), override_gates(model, {"nowhere": 1.0}):
        pass
    assert_no_hooks(model)


def test_remembered_sites_do_not_keep_a_model_alive() -> None:
    import gc
    import weakref

    from fmw.models import build_model

    model = build_model(weighting="cbam").eval()
    probe(model, torch.randn(1, 3, 32, 32))
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None, "the probe's site cache must hold models weakly"
