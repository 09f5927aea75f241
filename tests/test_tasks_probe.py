"""The probe on models that are not classifiers: torchvision's LR-ASPP and DeepLabV3 (an OrderedDict
out), Faster R-CNN (a list of images in, a list of box dicts out), a YOLO-style model (a list of
head maps out) and a model returning a dict. Sites as for classifiers, ``after`` bit-identical to
the tensor the model computed, the output returned as it is, and gates = 1 bit-identical to the
model with its products removed."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.lraspp import LRASPPHead
from torchvision.ops import SqueezeExcitation

import fmw
from fmw.sites.inputs import as_inputs, describe, map_tensors, tensors_of
from tests import tasks_models

MOBILENET_SE = [f"{index}.block.2" for index in (4, 5, 6, 11, 12, 13, 14, 15)]


def _identity(module: nn.Module) -> None:
    module.forward = lambda x: x


def _lraspp_head_without_product(head: LRASPPHead) -> None:
    def forward(features: dict[str, torch.Tensor]) -> torch.Tensor:
        low, high = features["low"], features["high"]
        x = F.interpolate(head.cbr(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return head.low_classifier(low) + head.high_classifier(x)

    head.forward = forward


def _without_products(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose weighting modules return their input: the products removed."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, (SqueezeExcitation, tasks_models.ChannelGate, tasks_models.SpatialGate)):
            _identity(module)
        elif isinstance(module, LRASPPHead):
            _lraspp_head_without_product(module)
    return plain


def _equal(a: Any, b: Any) -> bool:
    """Same structure, same types, every tensor equal to the bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_equal(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any], list[str]]] = {
    "lraspp": (
        tasks_models.lraspp,
        lambda: torch.randn(2, 3, 96, 96),
        [f"backbone.{name}" for name in MOBILENET_SE] + ["classifier"],
    ),
    "deeplabv3": (tasks_models.deeplab, lambda: torch.randn(1, 3, 96, 96), [f"backbone.{n}" for n in MOBILENET_SE]),
    "faster_rcnn": (
        tasks_models.faster_rcnn,
        lambda: [torch.rand(3, 120, 160), torch.rand(3, 100, 90)],
        [f"backbone.body.{name}" for name in MOBILENET_SE],
    ),
    "yolo": (
        tasks_models.build,
        lambda: torch.randn(2, 3, 64, 64),
        [f"neck.{scale}.{stage}" for scale in range(3) for stage in range(2)],
    ),
    "dict": (tasks_models.DictModel, lambda: torch.randn(2, 3, 16, 16), ["gate"]),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, nn.Module, Any, list[str]]:
    build, inputs, names = CASES[request.param]
    torch.manual_seed(0)
    model = build().eval()
    return request.param, model, inputs(), names


def test_sites_are_found_and_the_output_comes_back_as_the_model_returned_it(case) -> None:
    name, model, inputs, names = case
    with torch.no_grad():
        expected = model(inputs)
    result = fmw.probe(model, inputs)
    assert result.names == names
    kinds = {record.kind for record in result.sites}
    assert kinds <= {"channel", "spatial"}
    assert all(record.gates for record in result.sites)
    assert _equal(result.output, expected), describe(result.output)
    assert all(not tensor.requires_grad and tensor.device.type == "cpu" for tensor in tensors_of(result.output))
    if name in ("lraspp", "deeplabv3"):
        assert isinstance(result.output, OrderedDict) and result.output["out"].shape[1:] == (21, 96, 96)
    if name == "faster_rcnn":
        assert [sorted(d) for d in result.output] == [["boxes", "labels", "scores"]] * 2
        assert result.output[0]["boxes"].shape[0] > 0  # score threshold 0: boxes to compare


def test_after_is_bit_identical_to_what_the_model_computed(case) -> None:
    name, model, inputs, names = case
    captured: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    hooked = [n for n in names if not isinstance(modules[n], LRASPPHead)]
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o.detach().clone()))
        for n in hooked
    ]
    try:
        result = fmw.probe(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    assert len(hooked) >= len(names) - 1
    for site in hooked:
        assert torch.equal(result.site(site).after, captured[site]), site
    if name == "lraspp":  # the head's product x * s is made inside its forward: recompute it
        with torch.no_grad():
            high = model.backbone(inputs)["high"]
            head = model.classifier
            product = head.cbr(high) * head.scale(high)
        record = result.site("classifier")
        assert record.gates["channel"].shape == (2, 128, 1, 1)
        assert torch.equal(record.after, product)


def test_gates_at_one_are_bit_identical_to_the_model_without_its_products(case) -> None:
    _, model, inputs, names = case
    fmw.probe(model, inputs)
    with torch.no_grad():
        with fmw.override_gates(model) as replaced:
            off = model(inputs)
        plain = _without_products(model)(inputs)
        on = model(inputs)
    assert [site.name for site in replaced] == names
    assert _equal(off, plain)
    assert not _equal(off, on)


def test_find_sites_takes_the_input_as_the_model_wants_it(case) -> None:
    _, model, inputs, names = case
    assert [site.name for site in fmw.find_sites(copy.deepcopy(model), example=inputs)] == names


def test_inputs_carry_args_and_kwargs_to_the_model() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = tasks_models.ChannelGate(8)

        def forward(self, x: torch.Tensor, *, scale: torch.Tensor, extra: dict) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.gate(x * scale + extra["shift"])
            return y, y.mean((2, 3))

    torch.manual_seed(0)
    model = TwoInputs().eval()
    x, scale, shift = torch.randn(2, 8, 5, 5), torch.full((1, 8, 1, 1), 2.0), torch.ones(1)
    result = fmw.probe(model, fmw.Inputs(x, scale=scale, extra={"shift": shift}))
    assert result.names == ["", "gate"]  # the keyword tensor multiplies x as a channel gate: the model's own site
    assert (result.site("").gates["channel"] == 2.0).all() and result.site("").gates["channel"].shape[1] == 8
    expected = model(x, scale=scale, extra={"shift": shift})
    assert isinstance(result.output, tuple) and _equal(result.output, tuple(t.detach() for t in expected))
    with pytest.raises(fmw.FMWError, match=r"tuple of 2 \[tensor \(2, 8, 5, 5\), tensor \(2, 8\)\]"):
        _ = result.logits


def test_a_bare_tensor_still_gives_logits_and_bad_inputs_say_what_is_accepted() -> None:
    torch.manual_seed(0)
    model = tasks_models.DictModel().eval()
    result = fmw.probe(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(fmw.FMWError, match=r"ProbeResult\.output"):
        _ = result.logits
    assert isinstance(result.output, dict) and result.output["logits"].shape == (1, 4)
    with pytest.raises(ValueError, match=r"4-D tensor \(N, C, H, W\), got \(3, 8, 8\).*list of image tensors"):
        fmw.probe(model, torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"fmw\.Inputs"):
        fmw.probe(model, "image.jpg")  # type: ignore[arg-type]
    with pytest.raises(fmw.FMWError, match=r"on the input \(tensor \(1, 5, 8, 8\)\)"):
        fmw.find_sites(tasks_models.DictModel(), example=torch.randn(1, 5, 8, 8))


def test_map_tensors_keeps_every_container_type() -> None:
    value = OrderedDict(a=[torch.ones(1), (torch.zeros(2), "text")], b={"c": torch.ones(3)})
    doubled = map_tensors(value, lambda t: t * 2)
    assert type(doubled) is OrderedDict and isinstance(doubled["a"][1], tuple) and doubled["a"][1][1] == "text"
    assert [t.tolist() for t in tensors_of(doubled)] == [[2.0], [0.0, 0.0], [2.0, 2.0, 2.0]]
    assert as_inputs([torch.ones(3, 4, 4)]).describe() == "(list of 1 [tensor (3, 4, 4)])"
