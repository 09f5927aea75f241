"""Gates of every layout: attention modules written from their papers' equations (coordinate
attention, SimAM, BAM, GAM, Gather-Excite, Triplet, ShuffleAttention, EMA, selective kernel, SE
through ``torch.einsum`` and ``torch.addcmul``) in a small CNN, timm's attention layers in a timm
ResNet, and negative controls (normalisation, self-gating activations, additive fusion). For each:
the sites, each stage's layout and shape in the frame of the map the module received, ``after`` as
the model computed it, gates = 1 bit-identical to the module without its product, and the
inference contexts (inference mode, autocast, channels-last, half precision)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fmw.sites import override_gates, probe
from fmw.sites.layouts import LAYOUTS, layout_for_axes, register_layout
from tests.test_discovery import Net  # stem conv -> the module under test -> pooled linear head, 8 channels

CHANNELS = 8


class Weighting(nn.Module):
    """A module whose weighting products can be removed (``weigh = False``) for the reference."""

    weigh = True


class CoordinateAttention(Weighting):
    """Hou et al., CVPR 2021: pool along W and along H, a shared 1x1 conv with h-swish (written
    out: x * relu6(x + 3) / 6, a self-gating activation), then gates a_h (N, C, H, 1) and
    a_w (N, C, 1, W): out = x * a_w * a_h."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        mip = max(channels // reduction, 2)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        x_h = x.mean(dim=3, keepdim=True)
        x_w = x.mean(dim=2, keepdim=True).permute(0, 1, 3, 2)
        y = self.conv1(torch.cat([x_h, x_w], dim=2))
        y = y * F.relu6(y + 3) / 6
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))
        a_w = torch.sigmoid(self.conv_w(y_w.permute(0, 1, 3, 2)))
        return x * a_w * a_h if self.weigh else x


class SimAM(Weighting):
    """Yang et al., ICML 2021: energy e = (x - mu)^2 / (4 (var + lambda)) + 0.5 per channel,
    out = x * sigmoid(e), a full-size gate from each channel's statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + 1e-4)) + 0.5
        return x * torch.sigmoid(energy) if self.weigh else x


class BAM(Weighting):
    """Park et al., BMVC 2018: M = sigmoid(channel MLP(avgpool x) + dilated-conv spatial map),
    out = x * (1 + M), a full-size gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, 4), nn.ReLU(), nn.Linear(4, channels))
        self.spatial = nn.Sequential(nn.Conv2d(channels, 4, 1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=4, dilation=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.mlp(x.mean(dim=(2, 3)))[:, :, None, None]
        gate = 1 + torch.sigmoid(channel + self.spatial(x))
        return x * gate if self.weigh else x


class GAM(Weighting):
    """Liu et al., 2021: a per-pixel channel MLP (on the permuted map) and a convolutional spatial
    gate, both full-size, applied in turn."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, 4), nn.ReLU(), nn.Linear(4, channels))
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, 4, 7, padding=3), nn.ReLU(), nn.Conv2d(4, channels, 7, padding=3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        x = x * channel if self.weigh else x
        return x * torch.sigmoid(self.spatial(x)) if self.weigh else x


class GatherExcite(Weighting):
    """Hu et al., NeurIPS 2018: gather with a depthwise strided conv, excite by upsampling the
    sigmoid back to the map's size: a full-size gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gather = nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.interpolate(torch.sigmoid(self.gather(x)), size=x.shape[2:], mode="nearest")
        return x * gate if self.weigh else x


class ZPoolGate(nn.Module):
    """Triplet attention's branch gate: max and mean over the first axis, a 7x7 conv, a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class TripletAttention(Weighting):
    """Misra et al., WACV 2021: three branches, each a spatial gate in a rotated frame ((C, W) with
    H as channels, (H, C) with W as channels, and (H, W)), rotated back and averaged."""

    def __init__(self) -> None:
        super().__init__()
        self.cw, self.hc, self.hw = ZPoolGate(), ZPoolGate(), ZPoolGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rotated = x.permute(0, 2, 1, 3).contiguous()
        a = (rotated * self.cw(rotated) if self.weigh else rotated).permute(0, 2, 1, 3)
        rotated = x.permute(0, 3, 2, 1)
        b = (rotated * self.hc(rotated) if self.weigh else rotated).permute(0, 3, 2, 1)
        c = x * self.hw(x) if self.weigh else x
        return (a + b + c) / 3


class ShuffleAttention(Weighting):
    """Zhang & Yang, ICASSP 2021: the map reshaped to (N*G, C/G, H, W), split in two; a channel
    gate sigmoid(w * avgpool + b) on one half, a gate sigmoid(w * GroupNorm(x) + b) on the other,
    concatenated, back to (N, C, H, W) and channel-shuffled."""

    def __init__(self, channels: int, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.linspace(0.5, 1.5, half).view(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.full((1, half, 1, 1), 0.1))
        self.sweight = nn.Parameter(torch.linspace(0.5, 1.5, half).view(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.full((1, half, 1, 1), 0.2))
        self.norm = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x_0, x_1 = x.reshape(n * self.groups, -1, h, w).chunk(2, dim=1)
        channel = torch.sigmoid(self.cweight * x_0.mean(dim=(2, 3), keepdim=True) + self.cbias)
        spatial = torch.sigmoid(self.sweight * self.norm(x_1) + self.sbias)
        if self.weigh:
            x_0, x_1 = x_0 * channel, x_1 * spatial
        out = torch.cat([x_0, x_1], dim=1).reshape(n, c, h, w)
        return out.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class EMA(Weighting):
    """Ouyang et al., ICASSP 2023: on the map grouped as (N*G, C/G, H, W), coordinate gates and a
    GroupNorm make x1, a 3x3 conv makes x2, and cross-spatial softmax products of their pooled
    channels give a (N*G, 1, H, W) gate on the grouped map."""

    def __init__(self, channels: int, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        per_group = channels // groups
        self.conv1x1 = nn.Conv2d(per_group, per_group, 1)
        self.conv3x3 = nn.Conv2d(per_group, per_group, 3, padding=1)
        self.norm = nn.GroupNorm(per_group, per_group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group_x = x.reshape(n * self.groups, -1, h, w)
        x_h = group_x.mean(dim=3, keepdim=True)
        x_w = group_x.mean(dim=2, keepdim=True).permute(0, 1, 3, 2)
        hw = self.conv1x1(torch.cat([x_h, x_w], dim=2))
        x_h, x_w = torch.split(hw, [h, w], dim=2)
        x1 = self.norm(group_x * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid())
        x2 = self.conv3x3(group_x)
        x11 = torch.softmax(x1.mean(dim=(2, 3)).reshape(n * self.groups, 1, -1), dim=-1)
        x21 = torch.softmax(x2.mean(dim=(2, 3)).reshape(n * self.groups, 1, -1), dim=-1)
        x12 = x2.reshape(n * self.groups, c // self.groups, -1)
        x22 = x1.reshape(n * self.groups, c // self.groups, -1)
        weights = (torch.matmul(x11, x12) + torch.matmul(x21, x22)).reshape(n * self.groups, 1, h, w)
        out = group_x * weights.sigmoid() if self.weigh else group_x
        return out.reshape(n, c, h, w)


class SelectiveKernel(Weighting):
    """Li et al., CVPR 2019: two branches (3x3, dilated 3x3) stacked (N, 2, C, H, W), fused by
    sum and pooling into per-branch channel logits, a softmax over branches, a weighted sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, channels, 3, padding=2, dilation=2)]
        )
        self.fc = nn.Sequential(nn.Linear(channels, 4), nn.ReLU(), nn.Linear(4, 2 * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _, _ = x.shape
        stacked = torch.stack([F.relu(branch(x)) for branch in self.branches], dim=1)
        logits = self.fc(stacked.sum(dim=1).mean(dim=(2, 3))).view(n, 2, c, 1, 1)
        attention = torch.softmax(logits, dim=1)
        return (stacked * attention if self.weigh else stacked).sum(dim=1)


class EinsumSE(Weighting):
    """Squeeze-and-excitation applied with ``torch.einsum('nchw,nc->nchw', x, g)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, 4), nn.ReLU(), nn.Linear(4, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return torch.einsum("nchw,nc->nchw", x, gate) if self.weigh else x


class AddcmulSE(EinsumSE):
    """A residual SE written as one ``torch.addcmul(x, x, g)``: x + x * g."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))[:, :, None, None]
        return torch.addcmul(x, x, gate) if self.weigh else x + x


def images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n + size))


def built(body: Callable[[], nn.Module]) -> Net:
    torch.manual_seed(0)
    return Net(body()).eval()


# module, kind, stages (name, layout), whether ``after`` is the module's output
PAPERS: dict[str, tuple[Callable[[], nn.Module], str, list[str], bool]] = {
    "coordinate attention": (lambda: CoordinateAttention(CHANNELS), "coord_w+coord_h", ["coord_w", "coord_h"], True),
    "SimAM": (SimAM, "full", ["full"], True),
    "BAM": (lambda: BAM(CHANNELS), "full", ["full"], True),
    "GAM": (lambda: GAM(CHANNELS), "full", ["full", "full_2"], True),
    "Gather-Excite": (lambda: GatherExcite(CHANNELS), "full", ["full"], True),
    "Triplet": (TripletAttention, "coord_w+coord_h+spatial", ["coord_w", "coord_h", "spatial"], False),
    "ShuffleAttention": (lambda: ShuffleAttention(CHANNELS), "channel+full", ["channel", "full"], False),
    "EMA": (lambda: EMA(CHANNELS), "full", ["full"], True),
    "selective kernel": (lambda: SelectiveKernel(CHANNELS), "channel", ["channel"], False),
    "SE via einsum": (lambda: EinsumSE(CHANNELS), "channel", ["channel"], True),
    "SE via addcmul": (lambda: AddcmulSE(CHANNELS), "channel", ["channel"], True),
}


def body_io(model: Net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = model.body.register_forward_hook(lambda m, i, o: seen.append((i[0].clone(), o.clone())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def without_products(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, Weighting):
            module.weigh = False
    return plain


@pytest.mark.parametrize("case", list(PAPERS))
def test_paper_modules_are_one_site_with_gates_in_the_frame_of_the_map(case: str) -> None:
    make, kind, stages, after_is_output = PAPERS[case]
    model = built(make)
    x = images()
    result = probe(model, x)
    assert result.names == ["body"]
    record = result.site("body")
    assert (record.kind, [stage.name for stage in record.stages]) == (kind, stages)
    assert [stage.layout for stage in record.stages] == [name.split("_2")[0] for name in stages]
    received, output = body_io(model, x)
    if case == "selective kernel":  # K branch maps shown as one (N, K*C, H, W) map
        assert record.before.shape == (2, 2 * CHANNELS, 16, 16)
        assert torch.equal(record.after.reshape(2, 2, CHANNELS, 16, 16).sum(dim=1), output)
        assert record.frame_notes and "2 branch maps" in record.frame_notes[0]
    else:
        assert torch.equal(record.before, received), "before is the map the module received"
    for stage in record.stages:
        assert stage.gate.shape == LAYOUTS[stage.layout].contract_shape(record.before.shape), stage.name
    if after_is_output:
        assert torch.equal(record.after, output)
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))


@pytest.mark.parametrize("case", list(PAPERS))
def test_paper_modules_with_gates_of_one_equal_the_module_without_its_products(case: str) -> None:
    model = built(PAPERS[case][0])
    x = images()
    with torch.no_grad():
        reference = without_products(model)(x)
        weighted = model(x)
    probe(model, x)
    with torch.no_grad(), override_gates(model) as sites:
        switched_off = model(x)
    assert not torch.equal(weighted, reference)
    assert torch.equal(switched_off, reference)
    assert [site.name for site in sites] == ["body"]


def test_triplet_gates_are_the_rotated_gates_in_the_maps_frame() -> None:
    model = built(TripletAttention)
    x = images()
    record = probe(model, x).site("body")
    received, _ = body_io(model, x)
    body = model.body
    assert isinstance(body, TripletAttention)
    with torch.no_grad():
        cw = body.cw(received.permute(0, 2, 1, 3).contiguous())  # (N, 1, C, W) in the rotated frame
        hc = body.hc(received.permute(0, 3, 2, 1))  # (N, 1, H, C)
    assert torch.equal(record.gates["coord_w"], cw.permute(0, 2, 1, 3))
    assert torch.equal(record.gates["coord_h"], hc.permute(0, 3, 2, 1))
    assert torch.equal(record.after, received * record.gates["spatial"])
    assert record.frame_notes == []


def test_grouped_gates_have_the_models_batch_and_channel_numbering() -> None:
    model = built(lambda: ShuffleAttention(CHANNELS))
    x = images()
    record = probe(model, x).site("body")
    received, _ = body_io(model, x)
    channel = record.gates["channel"]
    assert channel.shape == (2, CHANNELS, 1, 1)
    # groups of 4 channels: the first 2 of each group carry the channel gate, the others are 1
    assert torch.equal(channel[:, [2, 3, 6, 7]], torch.ones(2, 4, 1, 1))
    body = model.body
    assert isinstance(body, ShuffleAttention)
    grouped = received.reshape(4, 4, 16, 16)[:, :2]
    expected = torch.sigmoid(body.cweight * grouped.mean(dim=(2, 3), keepdim=True) + body.cbias)
    assert torch.equal(channel[:, [0, 1, 4, 5]], expected.reshape(2, 4, 1, 1))
    assert any("part of the map" in note for note in record.frame_notes)
    ema = probe(built(lambda: EMA(CHANNELS)), x).site("body").gates["full"]
    assert torch.equal(ema[:, 0], ema[:, 3]) and torch.equal(ema[:, 4], ema[:, 7])  # one gate per group


def test_a_new_layout_is_one_registry_entry() -> None:
    found = layout_for_axes("WC")
    assert found is not None and found.name == "coord_w"
    assert LAYOUTS["strip_h"].contract_shape((2, 8, 5, 6)) == (2, 1, 5, 1)
    with pytest.raises(ValueError, match="already"):
        register_layout("columns", "W", "again")


def timm_resnet(attn: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=5, block_args={"attn_layer": attn}).eval()


TIMM = {  # attention layer -> kind, stage layouts
    "coord": ("coord_w+coord_h", ["coord_w", "coord_h"]),
    "scoord": ("full", ["full"]),
    "ela": ("coord_h+coord_w", ["coord_h", "coord_w"]),
    "strip": ("full", ["full"]),  # sigmoid(x_h + x_w): one gate per channel and position
    "gc": ("channel", ["channel"]),
}


@pytest.mark.parametrize("attn", list(TIMM))
def test_timm_attention_layers_in_a_resnet(attn: str) -> None:
    model = timm_resnet(attn)
    x = images(n=1, size=64)
    result = probe(model, x)
    blocks = [name for name, module in model.named_modules() if type(module).__name__ == "BasicBlock"]
    assert result.names == [f"{block}.se" for block in blocks]
    kind, layouts = TIMM[attn]
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.clone()))
        for name in result.names
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    for record in result.sites:
        assert (record.kind, [stage.layout for stage in record.stages]) == (kind, layouts)
        for stage in record.stages:
            assert stage.gate.shape == LAYOUTS[stage.layout].contract_shape(record.before.shape)
        assert torch.equal(record.after, outputs[record.name]), record.name
    with torch.no_grad(), override_gates(model):
        switched_off = model(x)
    plain = copy.deepcopy(model)
    for name in result.names:
        plain.set_submodule(name, nn.Identity())
    with torch.no_grad():
        assert torch.equal(switched_off, plain(x))


@pytest.mark.parametrize(("name", "sites"), [("skresnet18", 8), ("resnest14d", 4)])
def test_timm_selective_kernel_and_split_attention_networks(name: str, sites: int) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5).eval()
    x = images(n=1, size=64)
    result = probe(model, x)
    assert len(result.sites) == sites
    for record in result.sites:
        (stage,) = record.stages
        assert stage.layout == "channel" and stage.gate.shape[:2] == record.before.shape[:2]
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
    with override_gates(model):
        switched_off = probe(model, x)
    for record in switched_off.sites:
        assert torch.equal(record.after, record.before), record.name  # each branch map passes unchanged
    assert [record.name for record in switched_off.sites] == result.names


class HandWrittenBatchNorm(nn.Module):
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels))
        self.bias = nn.Parameter(torch.linspace(-0.1, 0.1, channels))
        self.register_buffer("running_mean", torch.linspace(-0.2, 0.2, channels))
        self.register_buffer("running_var", torch.linspace(0.5, 2.0, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        normalised = (x - self.running_mean.view(shape)) / torch.sqrt(self.running_var.view(shape) + 1e-5)
        return normalised * self.weight.view(shape) + self.bias.view(shape)


class Activation(nn.Module):
    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


NEGATIVE: dict[str, Callable[[], nn.Module]] = {
    "torchvision resnet18 with FrozenBatchNorm2d": lambda: torchvision.models.resnet18(
        num_classes=5, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d
    ),
    "hand-written batch norm": lambda: Net(HandWrittenBatchNorm(CHANNELS)),
    "hand-written SiLU": lambda: Net(Activation(lambda x: x * torch.sigmoid(x))),
    "hand-written hard-swish": lambda: Net(Activation(lambda x: x * F.relu6(x + 3) / 6)),
    "hand-written Mish": lambda: Net(Activation(lambda x: x * torch.tanh(F.softplus(x)))),
    "timm GCNet with additive fusion": lambda: timm_resnet("gca"),
}


@pytest.mark.parametrize("case", list(NEGATIVE))
def test_normalisation_self_gating_and_additive_fusion_are_not_weighting(case: str) -> None:
    torch.manual_seed(0)
    model = NEGATIVE[case]().eval()
    x = images(n=1, size=32)
    result = probe(model, x)
    assert result.sites == []
    with torch.no_grad():
        assert torch.equal(result.logits, model(x))
        with override_gates(model) as sites:
            assert torch.equal(model(x), result.logits)
    assert sites == []


def test_override_gates_before_any_probe_replaces_only_weighting() -> None:
    model = Net(nn.Sequential(HandWrittenBatchNorm(CHANNELS), CoordinateAttention(CHANNELS))).eval()
    x = images()
    with torch.no_grad():
        reference = without_products(model)(x)
        with override_gates(model) as sites:
            switched_off = model(x)
    assert torch.equal(switched_off, reference)
    assert [site.name for site in sites] == ["body.1"]


def test_a_full_size_gate_replaced_by_a_given_gate() -> None:
    model = built(SimAM)
    x = images()
    probe(model, x)
    half = torch.full((2, CHANNELS, 16, 16), 0.5)
    with override_gates(model, {"body": {"full": half}}):
        record = probe(model, x).site("body")
    assert torch.equal(record.gates["full"], half)
    assert torch.equal(record.after, record.before * 0.5)


CONTEXTS: dict[str, Callable[[], object]] = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "autocast bfloat16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("case", ["coordinate attention", "Triplet", "SimAM"])
def test_probe_and_override_in_every_inference_context(context: str, case: str) -> None:
    model = built(PAPERS[case][0])
    x = images()
    with CONTEXTS[context]():  # type: ignore[attr-defined]
        expected = model(x)
        result = probe(model, x)
        with override_gates(model):
            switched_off = model(x)
        reference = without_products(model)(x)
    assert torch.equal(result.logits, expected)
    assert [stage.name for stage in result.site("body").stages] == PAPERS[case][2]
    assert torch.equal(switched_off, reference)


@pytest.mark.parametrize("variant", ["channels_last", "bfloat16", "float16"])
def test_channels_last_and_half_precision_models(variant: str) -> None:
    model = built(PAPERS["coordinate attention"][0])
    x = images()
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    else:
        dtype = getattr(torch, variant)
        model, x = model.to(dtype), x.to(dtype)
    with torch.no_grad():
        expected = model(x)
        reference = without_products(model)(x)
    result = probe(model, x)
    record = result.site("body")
    assert torch.equal(result.logits, expected)
    assert [stage.layout for stage in record.stages] == ["coord_w", "coord_h"]
    assert all(stage.gate.dtype == x.dtype for stage in record.stages)
    with torch.no_grad(), override_gates(model):
        assert torch.equal(model(x), reference)
