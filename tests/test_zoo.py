"""Tests of the model zoo: torchvision and timm weighting modules as probe sites, ImageNet weights from
the torch cache (offline), users' state dicts read safely, and matching sites across model families."""

from __future__ import annotations

import io
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import get_model
from torchvision.ops import SqueezeExcitation

from fmw.errors import CheckpointError
from fmw.models import build_model, zoo
from fmw.sites import SiteDepth, find_sites, known, match_sites, override_gates, probe, site_depths

SMALL_INPUT = (1, 3, 64, 64)
SE_COUNTS = {"mobilenet_v3_small": 9, "mobilenet_v3_large": 8, "efficientnet_b0": 16, "regnet_y_400mf": 16}


def record_outputs(model: nn.Module, module_type: type | tuple[type, ...], images: torch.Tensor):
    """Run ``probe`` while independent hooks record, in execution order, every ``module_type``'s output."""
    names = {module: name for name, module in model.named_modules()}
    seen: list[tuple[str, torch.Tensor]] = []
    handles = [
        module.register_forward_hook(lambda m, i, o: seen.append((names[m], o.detach().clone())))
        for module in model.modules()
        if isinstance(module, module_type)
    ]
    try:
        result = probe(model, images)
    finally:
        for handle in handles:
            handle.remove()
    return result, seen


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(SMALL_INPUT, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(zoo.TORCHVISION_MODELS))
def test_every_squeeze_excitation_is_a_site_in_forward_order(name, images):
    opened = zoo.load_torchvision_model(name, weights="random")
    result, seen = record_outputs(opened.model, SqueezeExcitation, images)
    assert len(result.sites) == SE_COUNTS[name] == sum(isinstance(m, SqueezeExcitation) for m in opened.model.modules())
    assert result.names == [site_name for site_name, _ in seen]
    assert {record.kind for record in result.sites} == {"channel"}
    assert result.logits.shape == (1, 1000)
    assert len(opened.class_names) == 1000 and opened.class_names[0] == "tench"
    assert opened.random_weights and opened.label == f"{name} (random weights)"
    assert not opened.model.training


def test_after_is_bit_exact_and_is_input_times_gate(images):
    model = zoo.load_torchvision_model("efficientnet_b0", weights="random").model
    result, seen = record_outputs(model, SqueezeExcitation, images)
    for record, (_, output) in zip(result.sites, seen, strict=True):
        gate = record.gates["channel"]
        assert gate.shape == (1, record.before.shape[1], 1, 1)
        assert torch.equal(record.after, output)
        assert torch.equal(record.after, record.before * gate)


def test_preprocessing_and_classes_come_from_the_weights_metadata():
    small = zoo.load_torchvision_model("mobilenet_v3_small", weights="random")
    effnet = zoo.load_torchvision_model("efficientnet_b0", weights="random")
    regnet = zoo.load_torchvision_model("regnet_y_400mf", weights="random")
    assert small.preprocessing == zoo.Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    assert effnet.preprocessing.interpolation == "bicubic"
    assert (regnet.preprocessing.resize_size, regnet.input_size) == (232, (224, 224))
    tensor = small.preprocessing(Image.new("RGB", (300, 200), (124, 116, 104)))
    assert tensor.shape == (1, 3, 224, 224)
    assert tensor.abs().max() < 0.01  # the ImageNet mean colour normalises to about zero


def test_random_weights_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = zoo.load_torchvision_model("mobilenet_v3_small", weights="random", seed=3).model
    assert torch.equal(torch.rand(1), expected_next)
    second = zoo.load_torchvision_model("mobilenet_v3_small", weights="random", seed=3).model
    other = zoo.load_torchvision_model("mobilenet_v3_small", weights="random", seed=4).model
    key = "features.1.block.1.fc1.weight"
    assert torch.equal(first.state_dict()[key], second.state_dict()[key])
    assert not torch.equal(first.state_dict()[key], other.state_dict()[key])


def test_any_torchvision_classifier_opens_and_unknown_names_get_suggestions():
    assert "resnet50" in zoo.torchvision_classifiers() and "resnet50" not in zoo.TORCHVISION_MODELS
    assert zoo.load_torchvision_model("resnet18", weights="random").class_names[0] == "tench"
    with pytest.raises(zoo.ZooError, match=r"unknown torchvision model 'resnet5O'; did you mean: resnet50"):
        zoo.load_torchvision_model("resnet5O", weights="random")
    with pytest.raises(zoo.ZooError, match="'default' \\(published\\) or 'random'"):
        zoo.load_torchvision_model("mobilenet_v3_small", weights="imagenet")


# --- ImageNet weights from the torch cache, offline -------------------------------------------


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_cache_path_follows_torch_home(empty_torch_home):
    path = zoo.cached_weights_path("mobilenet_v3_small")
    assert path == empty_torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"


def test_missing_weights_without_download_say_where_and_what_to_do(empty_torch_home):
    with pytest.raises(zoo.ZooError) as error:
        zoo.load_torchvision_model("efficientnet_b0")
    message = str(error.value)
    assert f"not in the torch cache ({zoo.cached_weights_path('efficientnet_b0')})" in message
    assert "downloading was not allowed" in message and "Choose 'random weights'" in message


def test_failed_download_gives_the_clear_message_and_leaves_no_file(empty_torch_home, monkeypatch):
    attempts = []

    def no_network(url, destination, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(zoo.ZooError) as error:
        zoo.load_torchvision_model("mobilenet_v3_small", allow_download=True)
    path = zoo.cached_weights_path("mobilenet_v3_small")
    assert str(error.value) == (
        f"ImageNet weights for mobilenet_v3_small are not in the torch cache ({path}) and could not be downloaded: "
        "<urlopen error no network in this test>. Choose 'random weights' (on the command line: "
        "--random-weights) to explore the architecture, "
        "or copy the file there."
    )
    assert attempts == ["https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"]
    assert not path.exists()


def test_cached_weights_are_loaded_without_download(empty_torch_home, monkeypatch, images):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    reference = zoo.load_torchvision_model("mobilenet_v3_small", weights="random", seed=7).model
    path = zoo.cached_weights_path("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    opened = zoo.load_torchvision_model("mobilenet_v3_small")
    assert not opened.random_weights and opened.label == "mobilenet_v3_small"
    assert str(path) in opened.source
    with torch.no_grad():
        assert torch.equal(opened.model(images), reference(images))


class CreatesFile:
    """A pickle payload: unpickling it opens (creates) ``path`` for writing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def malicious_state_dict_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"features.0.0.weight": torch.zeros(1), "payload": CreatesFile(marker)}, buffer)
    return buffer.getvalue()


def test_payload_would_run_if_unpickled_unsafely(tmp_path):
    marker = tmp_path / "unsafe-load-ran"
    torch.load(io.BytesIO(malicious_state_dict_bytes(marker)), weights_only=False)
    assert marker.exists()


def test_unreadable_or_malicious_cached_weights_are_refused(empty_torch_home, tmp_path):
    path = zoo.cached_weights_path("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(zoo.ZooError, match=r"could not be read: .*Delete the file"):
        zoo.load_torchvision_model("mobilenet_v3_small")
    marker = tmp_path / "cached-payload-ran"
    path.write_bytes(malicious_state_dict_bytes(marker))
    with pytest.raises(zoo.ZooError, match="could not be read"):
        zoo.load_torchvision_model("mobilenet_v3_small")
    assert not marker.exists()


# --- users' torchvision state dicts -----------------------------------------------------------


def saved(state_dict: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def test_good_state_dict_upload_reproduces_the_model(images):
    torch.manual_seed(1)
    original = get_model("mobilenet_v3_small", weights=None).eval()
    opened = zoo.load_state_dict_upload(saved(original.state_dict()), "mobilenet_v3_small", "mine.pth")
    assert opened.name == "mobilenet_v3_small (mine.pth)" and not opened.random_weights
    assert "uploaded state dict mine.pth" in opened.source
    with torch.no_grad():
        assert torch.equal(opened.model(images), original(images))
    assert len(find_sites(opened.model)) == 9


def test_mismatched_state_dict_names_each_key():
    state = get_model("mobilenet_v3_small", weights=None).state_dict()
    del state["classifier.3.bias"]
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        zoo.load_state_dict_upload(saved(state), "mobilenet_v3_small", "bad.pth")
    message = str(error.value)
    assert message.startswith("bad.pth: this state dict does not fit torchvision's mobilenet_v3_small: ")
    assert "1 missing keys: classifier.3.bias" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "features.0.0.weight: file (8, 3, 3, 3) vs model (16, 3, 3, 3)" in message


def test_state_dict_for_another_architecture_is_refused():
    small = get_model("mobilenet_v3_small", weights=None).state_dict()
    with pytest.raises(CheckpointError, match=r"does not fit torchvision's mobilenet_v3_large: .*missing keys"):
        zoo.load_state_dict_upload(saved(small), "mobilenet_v3_large", "small.pth")


def test_malicious_state_dict_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    with pytest.raises(CheckpointError, match=r"evil.pth: refused"):
        zoo.load_state_dict_upload(malicious_state_dict_bytes(marker), "mobilenet_v3_small", "evil.pth")
    assert not marker.exists()


# --- timm (optional) --------------------------------------------------------------------------

needs_timm = pytest.mark.skipif(not zoo.timm_available(), reason="timm is not installed (pip install 'timm>=1.0,<2')")


def timm_class(name: str) -> type:
    from timm.layers import cbam, eca, squeeze_excite
    from timm.models import _efficientnet_blocks

    return {
        "seresnet18": squeeze_excite.SEModule,
        "resnet10t-ese": squeeze_excite.EffectiveSEModule,
        "resnet10t-eca": eca.EcaModule,
        "resnet10t-ceca": eca.CecaModule,
        "resnet10t-cbam": cbam.CbamModule,
        "mobilenetv3_small_100": _efficientnet_blocks.SqueezeExcite,
    }[name]


TIMM_EXPECTED = {
    "seresnet18": (8, "channel"),
    "resnet10t-ese": (4, "channel"),
    "resnet10t-eca": (4, "eca"),
    "resnet10t-ceca": (4, "eca"),
    "resnet10t-cbam": (4, "cbam"),
    "mobilenetv3_small_100": (9, "channel"),
}


@needs_timm
@pytest.mark.parametrize("name", list(zoo.TIMM_MODELS))
def test_timm_weighting_modules_are_sites_with_standard_gates(name, images):
    assert set(TIMM_EXPECTED) == set(zoo.TIMM_MODELS)
    opened = zoo.build_timm_model(name)
    assert opened.random_weights and opened.family == "timm" and len(opened.class_names) == 1000
    result, seen = record_outputs(opened.model, timm_class(name), images)
    count, kind = TIMM_EXPECTED[name]
    assert len(result.sites) == count and {record.kind for record in result.sites} == {kind}
    assert result.names == [site_name for site_name, _ in seen]
    for record, (_, output) in zip(result.sites, seen, strict=True):
        n, channels, height, width = record.before.shape
        assert torch.equal(record.after, output)
        assert record.gates["channel"].shape == (n, channels, 1, 1)
        if kind == "cbam":
            assert record.gates["spatial"].shape == (n, 1, height, width)
            assert torch.equal(record.after, record.before * record.gates["channel"] * record.gates["spatial"])
        else:
            assert list(record.gates) == ["channel"]
            assert torch.equal(record.after, record.before * record.gates["channel"])


@needs_timm
def test_overriding_timm_eca_gates_switches_them_off(images):
    model = zoo.build_timm_model("resnet10t-eca").model
    with override_gates(model, value=1.0):
        result = probe(model, images)
    for record in result.sites:
        assert torch.equal(record.after, record.before)
        assert torch.equal(record.gates["channel"], torch.ones_like(record.gates["channel"]))


@pytest.fixture
def without_timm(monkeypatch):
    """Make ``import timm`` (and its already imported submodules) fail as if timm were not
    installed, and rebuild the list of known classes."""
    for module_name in {"timm", *(name for name in sys.modules if name.startswith("timm."))}:
        monkeypatch.setitem(sys.modules, module_name, None)
    known._foreign_kinds.cache_clear()
    yield
    known._foreign_kinds.cache_clear()


def test_without_timm_torchvision_models_still_work(without_timm, images):
    assert not zoo.timm_available()
    with pytest.raises(zoo.ZooError, match=r"timm is not installed.*pip install 'timm>=1.0,<2'"):
        zoo.build_timm_model("seresnet18")
    model = zoo.load_torchvision_model("mobilenet_v3_small", weights="random").model
    assert len(probe(model, images).sites) == 9
    assert len(find_sites(build_model(weighting="cbam"))) == 3


@pytest.fixture
def timm_model() -> nn.Module:
    if not zoo.timm_available():
        pytest.skip("timm is not installed (pip install 'timm>=1.0,<2')")
    return zoo.build_timm_model("seresnet18").model


def test_timm_sites_are_found_without_timm_class_knowledge(timm_model, images):
    """Discovery does not need timm's classes: without them the same sites are found, kinds then
    named by their stages (SE's channel gate: "channel")."""
    with_names = find_sites(timm_model, example=images, rediscover=True)
    known._foreign_kinds.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for module_name in {"timm", *(name for name in sys.modules if name.startswith("timm."))}:
                patch.setitem(sys.modules, module_name, None)
            without = find_sites(timm_model, example=images, rediscover=True)
    finally:
        known._foreign_kinds.cache_clear()
    assert [site.name for site in without] == [site.name for site in with_names]
    assert len(without) == 8 and {site.kind for site in with_names} == {"channel"}
    assert {site.kind for site in without} == {"channel"}


# --- matching sites across families -----------------------------------------------------------


def test_sites_match_by_relative_depth_between_fmw_and_mobilenet(images):
    torch.manual_seed(0)
    ours = site_depths(probe(build_model(weighting="channel").eval(), torch.randn(1, 3, 32, 32)))
    theirs = site_depths(probe(zoo.load_torchvision_model("mobilenet_v3_small", weights="random").model, images))
    assert [(d.relative_depth, d.stage, d.resolution, d.channels) for d in ours] == [
        (0.0, 0, (15, 15), 64),
        (0.5, 1, (7, 7), 128),
        (1.0, 2, (3, 3), 128),
    ]
    assert [d.stage for d in theirs] == [0, 1, 1, 1, 1, 1, 2, 2, 2]
    assert [d.resolution for d in theirs][:2] == [(16, 16), (4, 4)]
    assert theirs[4].relative_depth == 0.5
    expected = [
        ("stages.0.weighting", "features.1.block.1"),
        ("stages.1.weighting", "features.7.block.2"),
        ("stages.2.weighting", "features.11.block.2"),
    ]
    for by in ("depth", "stage"):
        assert [(a.name, b.name) for a, b in match_sites(ours, theirs, by=by)] == expected
    by_depth = [b.index for _, b in match_sites(theirs, ours, by="depth")]
    by_stage = [b.index for _, b in match_sites(theirs, ours, by="stage")]
    assert by_depth == [0, 0, 0, 1, 1, 1, 1, 2, 2]  # ties (0.25, 0.75) go to the earlier site
    assert by_stage == [0, 1, 1, 1, 1, 1, 2, 2, 2]  # same resolution stage as the mobilenet site


def depth(index: int, count: int, stage: int, stage_count: int) -> SiteDepth:
    return SiteDepth(f"site{index}", index, index / (count - 1), stage, stage_count, (1, 1), 1)


def test_matching_by_stage_differs_from_matching_by_position():
    a = [depth(0, 3, 0, 3), depth(1, 3, 1, 3), depth(2, 3, 2, 3)]
    b = [depth(0, 5, 0, 3), depth(1, 5, 0, 3), depth(2, 5, 0, 3), depth(3, 5, 1, 3), depth(4, 5, 2, 3)]
    assert [m.name for _, m in match_sites(a, b, by="depth")] == ["site0", "site2", "site4"]
    assert [m.name for _, m in match_sites(a, b, by="stage")] == ["site0", "site3", "site4"]
    assert match_sites(a, []) == []
    with pytest.raises(ValueError, match="'depth' or 'stage'"):
        match_sites(a, b, by="width")


def test_one_site_model_has_relative_depth_zero():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SqueezeExcitation(4, 2))
    (only,) = site_depths(probe(model, torch.randn(1, 3, 8, 8)))
    assert (only.relative_depth, only.relative_stage, only.resolution, only.channels) == (0.0, 0.0, (6, 6), 4)
