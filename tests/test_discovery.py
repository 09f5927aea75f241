"""Discovery by computation: weighting written as users write it (the article's three layers, CBAM
and ECA as in their reference code, scSE, in-place products, ``torch.mul`` with a hard sigmoid,
a softmax over channels), torchvision's ConvNeXt and EfficientNet, and negative controls (ResNet,
VGG, a hand-written SiLU, a ViT). For each: the sites, kinds and stage order; ``after`` bit-exact
against the module's own output; gates = 1 bit-exact against a copy with the product removed;
nothing left installed after an error."""

from __future__ import annotations

import copy
import threading
from typing import cast

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import convnext_tiny, efficientnet_b0, resnet18, vgg11
from torchvision.models.vision_transformer import VisionTransformer

from fmw.errors import FMWError
from fmw.sites import NOTHING_FOUND, find_sites, override_gates, probe


class Switchable(nn.Module):
    """A user's weighting module whose products can be removed (``weigh = False``): the reference
    for "gates = 1" is the same module without the multiplication."""

    weigh = True

    def weight(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x * gate if self.weigh else x


# ---------------------------------------------------------------- the article's three layers


class ScaledConv(Switchable):
    """A conv followed by ``x * self.scale_weights.view(1, -1, 1, 1)``: a static scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.scale_weights = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.weight(x, self.scale_weights.view(1, -1, 1, 1))


class ArticleSpatialAttention(Switchable):
    """A conv, a 1x1 conv to one channel, a sigmoid, ``x * attention_map``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        attention_map = torch.sigmoid(self.attention(x))
        return self.weight(x, attention_map)


class ArticleChannelAttention(Switchable):
    """A conv, global average pooling, Linear, ReLU, Linear, sigmoid, ``x * w.view(b, c, 1, 1)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c = x.shape[:2]
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x).view(b, c)))))
        return self.weight(x, w.view(b, c, 1, 1))


# ---------------------------------------------------------------- CBAM and ECA, reference style


class ReferenceChannelGate(Switchable):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, 4), nn.ReLU(), nn.Linear(4, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        average = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        maximum = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        attention = self.mlp(average) + self.mlp(maximum)
        scale = torch.sigmoid(attention).unsqueeze(2).unsqueeze(3).expand_as(x)
        return self.weight(x, scale)


class ChannelPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class ReferenceSpatialGate(Switchable):
    def __init__(self) -> None:
        super().__init__()
        self.compress = ChannelPool()
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3), nn.BatchNorm2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight(x, torch.sigmoid(self.spatial(self.compress(x))))


class ReferenceCBAM(nn.Module):
    """CBAM written as its authors' code: two gate modules that each multiply, applied in turn."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ChannelGate = ReferenceChannelGate(channels)
        self.SpatialGate = ReferenceSpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class ReferenceECA(Switchable):
    """ECA as its reference code: pooled descriptor, a 1-D conv across channels, ``expand_as``."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return self.weight(x, torch.sigmoid(y).expand_as(x))


class ParallelSCSE(Switchable):
    """scSE (Roy et al. 2018): channel and spatial gates applied in parallel, ``x*cSE + x*sSE``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 4, 1), nn.ReLU(), nn.Conv2d(4, channels, 1), nn.Sigmoid()
        )
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight(x, self.cse(x)) + self.weight(x, self.sse(x))


class InPlaceGates(Switchable):
    """``x *= g`` for a channel gate, then ``x.mul_(g)`` for a spatial one, on a fresh map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.spatial = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        channel = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
        if self.weigh:
            x *= channel
        spatial = torch.sigmoid(self.spatial(x))
        if self.weigh:
            x.mul_(spatial)
        return x


class HardSigmoidMul(Switchable):
    """``torch.mul`` with a hard-sigmoid gate (MobileNetV3 style), gate as the first operand."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.hardsigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))
        return torch.mul(gate, x) if self.weigh else x


class SoftmaxChannels(Switchable):
    """A channel gate from a softmax over the channels of the pooled descriptor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.softmax(x.mean(dim=(2, 3), keepdim=True), dim=1) * x.shape[1]
        return self.weight(x, gate)


class Net(nn.Module):
    """stem conv -> ``body`` (the site under test) -> pooled linear head."""

    def __init__(self, body: nn.Module, channels: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.body = body
        self.head = nn.Linear(channels, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(F.relu(self.stem(x))).mean(dim=(2, 3)))


def built(body: nn.Module) -> Net:
    torch.manual_seed(0)
    return Net(body).eval()


def images(n: int = 2, size: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n + size))


# site name, kind, stage names, module
CASES = {
    "article scale": (lambda: ScaledConv(8), "body", "scale", ["channel"]),
    "article spatial": (lambda: ArticleSpatialAttention(8), "body", "spatial", ["spatial"]),
    "article channel": (lambda: ArticleChannelAttention(8), "body", "channel", ["channel"]),
    "reference CBAM": (lambda: ReferenceCBAM(8), "body", "channel+spatial", ["channel", "spatial"]),
    "reference ECA": (lambda: ReferenceECA(), "body", "channel", ["channel"]),
    "parallel scSE": (lambda: ParallelSCSE(8), "body", "channel+spatial", ["channel", "spatial"]),
    "in place": (lambda: InPlaceGates(8), "body", "channel+spatial", ["channel", "spatial"]),
    "torch.mul hardsigmoid": (lambda: HardSigmoidMul(8), "body", "channel", ["channel"]),
    "softmax over channels": (lambda: SoftmaxChannels(), "body", "channel", ["channel"]),
}


def without_products(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, Switchable):
            module.weigh = False
    return plain


def body_output(model: Net, x: torch.Tensor) -> torch.Tensor:
    outputs = []
    handle = model.body.register_forward_hook(lambda module, inputs, output: outputs.append(output.clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return outputs[0]


def assert_nothing_installed(model: nn.Module) -> None:
    assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode was left on the stack"
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name!r}"
        assert "forward" not in vars(module), f"forward wrapper left on {name!r}"


@pytest.mark.parametrize("case", list(CASES))
def test_users_weighting_is_found_with_its_stages_and_recorded_bit_exact(case: str) -> None:
    make, name, kind, stages = CASES[case]
    model = built(make())
    x = images()
    result = probe(model, x)
    assert result.names == [name]
    record = result.site(name)
    assert (record.kind, list(record.gates)) == (kind, stages)
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
    n, c, h, w = record.before.shape
    for stage, gate in record.gates.items():
        assert gate.shape == ((n, c, 1, 1) if stage.startswith("channel") else (n, 1, h, w))
    if case != "parallel scSE":  # parallel stages: `after` is the last stage's product, the sum is not
        assert torch.equal(record.after, body_output(model, x))
    recomputed = record.before
    for gate in record.gates.values():
        recomputed = recomputed * gate if case != "parallel scSE" else record.before * gate
    assert torch.equal(record.after, recomputed)
    assert_nothing_installed(model)


@pytest.mark.parametrize("case", list(CASES))
def test_gates_of_one_equal_the_module_with_its_products_removed(case: str) -> None:
    model = built(CASES[case][0]())
    x = images()
    with torch.no_grad():
        reference = without_products(model)(x)
        weighted = model(x)
        with override_gates(model) as sites:
            switched_off = model(x)
    assert not torch.equal(weighted, reference), "the weighting must matter for the comparison to mean anything"
    assert torch.equal(switched_off, reference)
    assert [site.name for site in sites] == ["body"]
    with torch.no_grad():
        assert torch.equal(model(x), weighted), "the override ends with the block"
    assert_nothing_installed(model)


def test_named_override_of_one_stage_of_a_user_cbam() -> None:
    model = built(ReferenceCBAM(8))
    x = images()
    probe(model, x)
    with override_gates(model, {"body": {"spatial": 1.0}}):
        result = probe(model, x)
    record = result.site("body")
    assert torch.equal(record.gates["spatial"], torch.ones_like(record.gates["spatial"]))
    assert torch.equal(record.after, record.before * record.gates["channel"])


def test_a_static_gate_is_a_scale_and_an_input_dependent_one_is_not() -> None:
    static = probe(built(ScaledConv(8)), images(n=1)).sites[0]
    dynamic = probe(built(ArticleChannelAttention(8)), images(n=1)).sites[0]
    assert (static.kind, dynamic.kind) == ("scale", "channel")
    scale = built(ScaledConv(8)).body.get_parameter("scale_weights")
    assert torch.equal(static.gates["channel"][0, :, 0, 0], scale.detach())


# ---------------------------------------------------------------- torchvision


def test_convnext_layer_scale_is_one_scale_site_per_block() -> None:
    torch.manual_seed(0)
    model = convnext_tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    result = probe(model, x)
    blocks = [name for name, module in model.named_modules() if type(module).__name__ == "CNBlock"]
    assert result.names == blocks and len(blocks) == 18
    assert {record.kind for record in result.sites} == {"scale"}
    layer_scale = model.get_submodule(blocks[0]).get_parameter("layer_scale")
    assert torch.equal(result.sites[0].gates["channel"][0], layer_scale.detach())
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))


def test_efficientnet_b0_has_sixteen_squeeze_excitation_sites_and_no_silu_sites() -> None:
    torch.manual_seed(0)
    model = efficientnet_b0().eval()
    x = torch.randn(1, 3, 64, 64)
    result = probe(model, x)
    se = [name for name, module in model.named_modules() if type(module).__name__ == "SqueezeExcitation"]
    assert result.names == se and len(se) == 16
    assert {record.kind for record in result.sites} == {"channel"}
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: outputs.__setitem__(name, output.clone())
        )
        for name in se
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    for record in result.sites:
        assert torch.equal(record.after, outputs[record.name]), record.name


class HandWrittenSiLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return (x * torch.sigmoid(x)).mean(dim=(2, 3))


NEGATIVE = {
    "resnet18": (lambda: resnet18(), 32),
    "vgg11": (lambda: vgg11(), 32),
    "hand-written SiLU": (HandWrittenSiLU, 12),
    "vision transformer": (
        lambda: VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64),
        32,
    ),
}


@pytest.mark.parametrize("case", list(NEGATIVE))
def test_models_without_weighting_have_no_sites_and_say_what_fmw_looks_for(case: str) -> None:
    make, size = NEGATIVE[case]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(1, 3, size, size)
    result = probe(model, x)
    assert result.sites == []
    assert result.message == NOTHING_FOUND and "(N, C, H, W)" in NOTHING_FOUND
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
        with override_gates(model) as sites:
            assert torch.equal(model(x), result.logits)
    assert sites == []


# ---------------------------------------------------------------- hygiene and limits


class FailsAfterAProduct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = ArticleChannelAttention(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.body(torch.randn(x.shape[0], 8, 6, 6))
        raise RuntimeError("boom after a product")


class SpatialOnRequest(ArticleSpatialAttention):
    """A channel gate always, then the article's spatial gate when ``spatial`` is set: the same
    modules make different products from one pass to the next."""

    spatial = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(self.attention(x)) if self.spatial else x


def test_a_later_probe_regroups_when_the_products_change() -> None:
    """Later probes reuse the last pass's grouping only for the same products: a module that adds
    a stage gets its new kind and stage order, and drops back when the stage goes."""
    model = built(SpatialOnRequest(8))
    block = cast(SpatialOnRequest, model.body)
    first = probe(model, images())
    assert [(r.name, r.kind, list(r.gates)) for r in first.sites] == [("body", "channel", ["channel"])]
    block.spatial = True
    second = probe(model, images())
    assert [(r.name, r.kind, list(r.gates)) for r in second.sites] == [
        ("body", "channel+spatial", ["channel", "spatial"])
    ]
    with torch.no_grad():
        assert torch.equal(second.sites[0].after, block(F.relu(model.stem(images()))))
    block.spatial = False
    assert [(r.kind, list(r.gates)) for r in probe(model, images()).sites] == [("channel", ["channel"])]


def test_nothing_is_left_installed_after_an_error() -> None:
    model = FailsAfterAProduct().eval()
    with pytest.raises(RuntimeError, match="boom after a product"):
        probe(model, images())
    assert_nothing_installed(model)
    with pytest.raises(RuntimeError, match="boom after a product"), override_gates(model):
        model(images())
    assert_nothing_installed(model)
    with torch.no_grad():
        plain = built(ArticleChannelAttention(8))
        assert torch.equal(probe(plain, images()).logits, plain(images())), "later passes are unaffected"


def test_scripted_and_compiled_models_are_refused_with_a_message() -> None:
    scripted = torch.jit.trace(built(ScaledConv(8)), images())
    with pytest.raises(FMWError, match="TorchScript"):
        probe(scripted, images())
    compiled = cast(nn.Module, torch.compile(built(ScaledConv(8))))
    with pytest.raises(FMWError, match=r"torch\.compile.*_orig_mod"):
        probe(compiled, images())
    # DataParallel runs replicas in other threads (on a machine with several GPUs), unseen
    parallel = nn.DataParallel(built(ScaledConv(8)))
    with pytest.raises(FMWError, match=r"nn\.DataParallel.*model\.module"):
        probe(parallel, images())
    assert_nothing_installed(parallel)


def test_find_sites_without_a_probe_runs_one_pass_and_reports_an_input_it_cannot_take() -> None:
    model = built(ReferenceCBAM(8))
    (site,) = find_sites(model, example=images(n=1))
    assert (site.name, site.kind, [stage.name for stage in site.stages]) == (
        "body",
        "channel+spatial",
        ["channel", "spatial"],
    )
    assert [stage.maker for stage in site.stages] == ["body.ChannelGate", "body.SpatialGate"]
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 2))
    with pytest.raises(FMWError, match=r"could not run the model once.*\(1, 3, 224, 224\).*example"):
        find_sites(fixed)


def test_two_threads_probing_one_user_model_get_their_own_records() -> None:
    model = built(ParallelSCSE(8))
    inputs = {0: images(n=1), 1: images(n=3)}
    references = {key: probe(model, x) for key, x in inputs.items()}
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(key: int) -> None:
        for _ in range(10):
            barrier.wait(timeout=30)
            results[key].append(probe(model, inputs[key]).site("body").after)

    threads = [threading.Thread(target=work, args=(key,)) for key in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for key, afters in results.items():
        assert len(afters) == 10
        assert all(torch.equal(after, references[key].site("body").after) for after in afters)


class ChainedInPlace(nn.Module):
    """Two sites in a row, the second multiplying the first's product in place."""

    def __init__(self) -> None:
        super().__init__()
        self.first = ArticleChannelAttention(8)
        self.second = InPlaceGates(8)
        self.second.conv = nn.Identity()  # type: ignore[assignment]  # multiply the first site's product itself

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_a_record_survives_an_in_place_product_on_it_in_every_mode() -> None:
    model = built(ChainedInPlace())
    x = images()
    passes: list[int] = []
    model.register_forward_pre_hook(lambda module, inputs: passes.append(1))
    for _ in range(2):  # the first probe watches everything; the second only the modules with products
        passes.clear()
        result = probe(model, x)
        assert len(passes) == 1, "the overwrite was seen and the record copied first: no second pass"
        with torch.no_grad():
            expected = model.get_submodule("body.first")(F.relu(model.stem(x)))
        assert torch.equal(result.site("body.first").after, expected)
        assert torch.equal(result.site("body.second").before, expected)
