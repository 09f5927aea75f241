"""Everything above the probe for every gate layout: summaries, statistics (by layout, not by name),
the dataset-mean override, figures, exports and every dashboard view, on fmw's coordinate-attention
and SimAM networks and on small hand-written modules with two channel stages and with a strip gate."""

from __future__ import annotations

import copy
import csv
import io
import json
import types

import numpy as np
import pytest
import torch
from torch import nn

from fmw.analysis import ImageAnalysis, batch_statistics, summarise_site
from fmw.analysis.changes import site_change
from fmw.analysis.layouts import StageSummary, over_image
from fmw.analysis.stats import GateStatistics, StageStatistics, collect_gate_statistics
from fmw.export import analysis_arrays, gates_csv
from fmw.figures import montage, site_column_figure, stage_figure, stage_title
from fmw.figures.compare import site_change_figure
from fmw.models import build_model
from fmw.sites import override_gates, probe
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, array, figures

CLASSES = ["a", "b", "c"]


class TwoChannelGates(nn.Module):
    """Two squeeze-and-excitation gates in a row: stages channel, channel_2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = nn.Linear(channels, channels)
        self.second = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.sigmoid(self.first(x.mean(dim=(2, 3))))[:, :, None, None]
        return x * torch.sigmoid(self.second(x.mean(dim=(2, 3))))[:, :, None, None]


class RowGate(nn.Module):
    """A strip gate: one value per row, shared by every channel and column (strip_h)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.score(x).mean(dim=3, keepdim=True))


class SmallNet(nn.Module):
    def __init__(self, gate: nn.Module, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.gate = gate
        self.head = nn.Linear(channels, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(torch.relu(self.stem(x))).mean(dim=(2, 3)))


def fmw_model(weighting: str) -> nn.Module:
    torch.manual_seed(3)
    return build_model(weighting=weighting).eval()


def small(gate: type[nn.Module]) -> nn.Module:
    torch.manual_seed(4)
    return SmallNet(gate(6)).eval()


MODELS = {
    "coord": (lambda: fmw_model("coord"), 32),
    "simam": (lambda: fmw_model("simam"), 32),
    "two channel": (lambda: small(TwoChannelGates), 12),
    "strip": (lambda: small(RowGate), 12),
}
EXPECTED_LAYOUTS = {
    "coord": [("coord_w", "coord_w"), ("coord_h", "coord_h")],
    "simam": [("full", "full")],
    "two channel": [("channel", "channel"), ("channel_2", "channel")],
    "strip": [("strip_h", "strip_h")],
}
IMAGE_SHAPES = {"channel": "C", "spatial": "HW", "coord_h": "CH", "coord_w": "CW", "strip_h": "H", "full": "CHW"}


def inputs(size: int, count: int = 6) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(7))


@pytest.fixture(params=list(MODELS), scope="module")
def probed(request):
    make, size = MODELS[request.param]
    model = make()
    images = inputs(size)
    with torch.no_grad():
        result = probe(model, images)
    return request.param, model, images, result


def image_shape(layout: str, before: torch.Tensor) -> tuple[int, ...]:
    sizes = dict(zip("CHW", before.shape[1:]))
    return tuple(sizes[axis] for axis in IMAGE_SHAPES[layout])


def test_summaries_keep_every_stage_with_its_layout_and_shape(probed):
    name, _, _, result = probed
    assert result.sites
    for record in result.sites:
        summary = summarise_site(record, index=2)
        assert [(stage.name, stage.layout) for stage in summary.stages] == EXPECTED_LAYOUTS[name]
        for stage, recorded in zip(summary.stages, record.stages):
            assert stage.gate.shape == image_shape(stage.layout, record.before)
            np.testing.assert_array_equal(stage.gate.ravel(), recorded.gate[2].float().numpy().ravel())
        assert list(summary.gates) == [stage for stage, _ in EXPECTED_LAYOUTS[name]]


def test_statistics_accumulate_each_stage_by_its_layout(probed):
    name, model, images, _ = probed
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    statistics = collect_gate_statistics(model, [(images[:4], labels[:4]), (images[4:], labels[4:])], CLASSES)
    with torch.no_grad():
        result = probe(model, images)
    for record in result.sites:
        site = statistics.site(record.name)
        assert [(s, site.stages[s].layout) for s in site.stages] == EXPECTED_LAYOUTS[name]
        for stage in record.stages:
            gate = stage.gate.double()
            accumulated = gate.mean(dim=(2, 3)) if stage.layout == "full" else gate.reshape(len(images), -1)
            direct = np.stack([accumulated[labels == k].mean(0).numpy() for k in range(len(CLASSES))])
            statistics_of_stage = site.stages[stage.name]
            expected_shape = (gate.shape[1],) if stage.layout == "full" else image_shape(stage.layout, record.before)
            assert statistics_of_stage.shape == expected_shape
            np.testing.assert_allclose(statistics_of_stage.class_mean, direct, rtol=1e-6, atol=1e-9)
            if stage.layout == "full":
                np.testing.assert_allclose(statistics_of_stage.gate_mean, gate.mean(0).numpy(), rtol=1e-6, atol=1e-9)
                np.testing.assert_allclose(statistics_of_stage.gate_std, gate.std(0, unbiased=False).numpy(), atol=1e-6)
            else:
                assert statistics_of_stage.gate_mean is None
            assert statistics_of_stage.mean_gate().shape == (1, *gate.shape[1:])
            np.testing.assert_allclose(statistics_of_stage.mean_gate()[0].numpy(), gate.mean(0).numpy(), rtol=1e-5)
    again = GateStatistics.from_json(json.loads(json.dumps(statistics.to_json())))
    for site, read in zip(statistics.sites, again.sites):
        for stage, part in site.stages.items():
            assert read.stages[stage].layout == part.layout
            torch.testing.assert_close(read.stages[stage].mean_gate(), part.mean_gate(), rtol=1e-6, atol=1e-7)


def test_statistics_files_without_layouts_read_each_stage_by_its_name():
    part = {"shape": [2], "class_mean": [[0.1, 0.2]], "mean": [0.1, 0.2], "std": [0.0, 0.0]}
    stage = StageStatistics.from_json("channel_2", {**part, "specificity": None, "class_distance": None})
    assert stage.layout == "channel" and stage.mean_gate().shape == (1, 2, 1, 1)


def test_override_with_the_dataset_mean_gate_is_bit_exact_for_every_layout(probed):
    name, model, images, _ = probed
    statistics = collect_gate_statistics(model, [(images, torch.tensor([0, 1, 2, 0, 1, 2]))], CLASSES)
    replacements = statistics.replacements()
    with override_gates(model, replacements), torch.no_grad():
        overridden = model(images)
    reference = copy.deepcopy(model)
    for site, gates in replacements.items():
        means = list(gates.values())

        def forward(self, x, means=means):  # the module with its gates replaced by the dataset means
            for mean in means:
                x = x * mean
            return x

        module = reference.get_submodule(site)
        module.forward = types.MethodType(forward, module)
    with torch.no_grad():
        expected = reference(images)
    assert torch.equal(overridden, expected), name


def test_figures_draw_every_layout():
    rng = np.random.default_rng(0)
    gates = {
        "channel": rng.uniform(size=5),
        "spatial": rng.uniform(size=(4, 6)),
        "coord_h": rng.uniform(size=(5, 4)),
        "coord_w": rng.uniform(size=(5, 6)),
        "strip_h": rng.uniform(size=4),
        "strip_w": rng.uniform(size=6),
        "full": rng.uniform(size=(5, 4, 6)),
    }
    for layout, gate in gates.items():
        figure = stage_figure(StageSummary(layout, layout, gate.astype(np.float32), "a note"))
        trace = figure.data[0]
        assert "a note" in figure.layout.title.text
        if layout == "channel":
            assert trace.type == "bar" and len(trace.y) == 5
        elif layout in ("strip_h", "strip_w"):
            assert trace.type == "scatter"
            np.testing.assert_allclose(trace.y, gate, rtol=1e-6)
        elif layout == "full":
            assert trace.type == "heatmap"
            np.testing.assert_allclose(trace.z, montage(gate).values, rtol=1e-6)
        else:
            assert trace.type == "heatmap" and np.asarray(trace.z).shape == gate.shape
    coord = [StageSummary("coord_w", "coord_w", gates["coord_w"]), StageSummary("coord_h", "coord_h", gates["coord_h"])]
    expected = np.outer(gates["coord_h"].mean(0), gates["coord_w"].mean(0))
    np.testing.assert_allclose(over_image(coord), expected, rtol=1e-6)
    column = site_column_figure(rng.normal(size=(5, 4, 6)), rng.normal(size=(5, 4, 6)), coord)
    assert [np.asarray(t.z).shape for t in column.data[2:]] == [(5, 6), (5, 4)]


def test_compare_columns_and_exports_keep_every_stage(probed):
    name, _, _, result = probed
    record = result.sites[0]
    summary = summarise_site(record)
    change = site_change(summary)
    figure = site_change_figure(change, np.zeros((32, 32, 3), np.uint8))
    names = [trace.name for trace in figure.data]
    for stage in summary.stages:
        if stage.layout in ("coord_h", "coord_w", "strip_h"):
            trace = next(t for t in figure.data if t.name == stage_title(stage))
            np.testing.assert_allclose(trace.z if stage.layout != "strip_h" else trace.y, stage.gate, rtol=1e-6)
    if name in ("coord", "simam", "strip"):
        overlay = next(t for t in figure.data if t.name == "gates over the image")
        np.testing.assert_allclose(overlay.z, over_image(summary.stages), rtol=1e-6)
    if name == "simam":
        montage_trace = next(t for t in figure.data if t.name.startswith("gate maps"))
        assert np.asarray(montage_trace.z).shape == montage(summary.stages[0].gate).values.shape
    if name == "two channel":
        assert names.count("channel gate") == 2, "both channel stages drawn as bars"

    sites = [summarise_site(r) for r in result.sites]
    analysis = ImageAnalysis("model", (32, 32), [], sites, np.zeros((2, 2, 3), np.uint8))
    arrays = analysis_arrays(analysis)
    rows = list(csv.reader(io.StringIO(gates_csv(sites))))
    assert rows[0] == ["site", "kind", "stage", "layout", "channel", "row", "column", "gate"]
    for site in sites:
        for stage in site.stages:
            np.testing.assert_array_equal(arrays[f"{site.name}.{stage.name}_gate"], stage.gate)
            mine = [row for row in rows[1:] if row[0] == site.name and row[2] == stage.name]
            assert len(mine) == stage.gate.size and {row[3] for row in mine} == {stage.layout}
            np.testing.assert_array_equal([float(row[-1]) for row in mine], stage.gate.ravel().astype(np.float64))


def test_batch_statistics_keep_each_stage_mean_in_its_layout(probed):
    _, _, _, result = probed
    summaries = [[summarise_site(record, index) for record in result.sites] for index in range(3)]

    crop = np.zeros((2, 2, 3), np.uint8)
    statistics = batch_statistics([ImageAnalysis("model", (32, 32), [], sites, crop) for sites in summaries])
    for position, site in enumerate(statistics):
        for order, stage in enumerate(site.mean_stages):
            gates = np.stack([sites[position].stages[order].gate for sites in summaries])
            np.testing.assert_allclose(stage.gate, gates.mean(0), rtol=1e-6)


@pytest.fixture
def layout_checkpoints(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    make_checkpoint(directory / "coord.safetensors", "coord", seed=21)
    make_checkpoint(directory / "simam.safetensors", "simam", seed=22)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    threads = torch.get_num_threads()
    yield directory
    torch.set_num_threads(threads)


PAGES = (
    "views/compare.py",
    "views/explorer.py",
    "views/attribution.py",
    "views/weighting_off.py",
    "views/batch.py",
    "views/statistics.py",
    "views/models.py",
)


def test_every_view_draws_coordinate_and_full_size_gates(layout_checkpoints):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception
    specs = figures(at)
    names = {trace.get("name") for spec in specs.values() for trace in spec["data"]}
    drawn = {"gates over the image", "gate: channel × column", "gate maps, one per channel"}
    assert drawn <= names
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception and not at.error, page
        boxes = [box for box in at.selectbox if box.label == "Checkpoint"]
        for kind in ("coord", "simam") if boxes else ():
            boxes[0].set_value(kind).run()
            assert not at.exception and not at.error, (page, kind)
            specs = figures(at)
            if page == "views/explorer.py":
                expected = {"coord": {"explorer-coord_w", "explorer-coord_h"}, "simam": {"explorer-full"}}[kind]
                assert expected | {"explorer-overlay", "explorer-grids"} <= set(specs)
                if kind == "coord":
                    z = array(specs["explorer-coord_h"]["data"][0]["z"])
                    assert z.shape[0] == 64 and z.shape[1] == 15, "channels x rows"
            if page == "views/batch.py":
                assert {"coord": "batch-coord_h", "simam": "batch-full"}[kind] in specs
            boxes = [box for box in at.selectbox if box.label == "Checkpoint"]
