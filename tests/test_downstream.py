"""Everything downstream of discovery works on a model fmw has no class knowledge of: a user's net
with a CBAM written as its authors' code and a static per-channel scale inside a block. Through the
dashboard's service layer: analysis, batch and gate statistics, attribution on both sides of a
site (the activation method must return exactly the probe's tensors), switching weighting off,
exports and the HTML report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fmw.analysis import analyse_image, analyse_images, batch_inputs, batch_statistics
from fmw.analysis.ablation import compare_weighting_off
from fmw.analysis.attribution import attribute_site
from fmw.analysis.stats import gate_statistics
from fmw.export import analysis_arrays, gates_csv
from fmw.export.report import report_sections
from fmw.models.user import UserModelOptions, wrap_module
from fmw.sites import probe
from tests.test_discovery import ReferenceCBAM, ScaledConv


class UsersNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.attention = ReferenceCBAM(8)
        self.block = ScaledConv(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(torch.relu(self.stem(x)))
        return self.head(self.block(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    options = UserModelOptions(input_size=24, class_names=("cat", "dog", "car", "tree"))
    return wrap_module(UsersNet(), "users-net", "a test's own model", options)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, size=(30 + 5 * i, 40, 3), dtype=np.uint8) for i in range(4)]


def test_analysis_has_both_sites_with_their_gates(model, photos) -> None:
    analysis = analyse_image(model, photos[0])
    assert [(site.name, site.kind) for site in analysis.sites] == [("attention", "channel+spatial"), ("block", "scale")]
    attention, block = analysis.sites
    assert attention.channel_gate is not None and attention.spatial_gate is not None and block.channel_gate is not None
    assert attention.channel_gate.shape == (8,) and attention.spatial_gate.shape == (24, 24)
    assert block.spatial_gate is None and np.array_equal(
        block.channel_gate, model.model.block.scale_weights.detach().numpy()
    )
    assert [p.class_name for p in analysis.predictions][:1][0] in {"cat", "dog", "car", "tree"}


def test_batch_and_gate_statistics(model, photos) -> None:
    analyses = analyse_images(model, photos)
    statistics = batch_statistics(analyses)
    assert [s.name for s in statistics] == ["attention", "block"]
    inputs = batch_inputs(model, photos)
    gates = gate_statistics(model.model, inputs, model.class_names, labels=torch.tensor([0, 1, 0, 1]))
    attention = next(site for site in gates.sites if site.name == "attention")
    assert set(attention.stages) == {"channel", "spatial"} and gates.images == 4
    block = next(site for site in gates.sites if site.name == "block")
    assert block.specificity == pytest.approx(0.0, abs=1e-6), "a static scale is the same for every class"


def test_attribution_acts_on_exactly_the_two_sides_of_a_site(model, photos) -> None:
    inputs = batch_inputs(model, photos[:2])
    records = probe(model.model, inputs)
    for site in ("attention", "block"):
        result = attribute_site(model.model, inputs, site, "activation")
        assert np.array_equal(result.before, records.site(site).before.numpy()), site
        assert np.array_equal(result.after, records.site(site).after.numpy()), site
    cam = attribute_site(model.model, inputs, "block", "grad_cam")
    assert cam.before.shape[-2:] == (24, 24) and np.isfinite(cam.after).all()


def test_switching_weighting_off_and_exports(model, photos) -> None:
    inputs = batch_inputs(model, photos[:1])
    comparison = compare_weighting_off(model.model, inputs, model.class_names)
    assert [row.label for row in comparison.rows][1:] == ["attention", "block", "all sites"]
    analysis = analyse_image(model, photos[0])
    arrays = analysis_arrays(analysis)
    assert arrays["attention.spatial_gate"].shape == (24, 24) and "block.channel_gate" in arrays
    assert gates_csv(analysis.sites).count("\nblock,scale,channel,") == 8


def test_the_html_report(model) -> None:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (50, 40), (30, 120, 200)).save(buffer, format="PNG")
    sections, errors = report_sections([("photo.png", buffer.getvalue())], {"users-net": model}, attribution="saliency")
    assert errors == []
    titles = [section.title for section in sections]
    assert "users-net · attention" in titles and "users-net · block" in titles
