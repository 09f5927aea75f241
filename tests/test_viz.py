"""Tests of fmw.figures.sites: montage layout and values, one trace per grid, hover data, shared ranges,
sorted gates, overlay geometry, and that the module stays free of streamlit and torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fmw.figures as viz
from fmw.analysis import StageSummary


def maps(channels: int = 5, height: int = 3, width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(channels, height, width)).astype(np.float32)


def test_montage_places_each_channel_in_its_tile_with_nan_gaps():
    values = maps()
    tiled = viz.montage(values, order=[4, 3, 2, 1, 0], columns=2)
    assert (tiled.rows, tiled.columns) == (3, 2)
    assert tiled.values.shape == (3 * 4 - 1, 2 * 5 - 1)
    np.testing.assert_array_equal(tiled.values[0:3, 0:4], values[4])
    np.testing.assert_array_equal(tiled.values[0:3, 5:9], values[3])
    np.testing.assert_array_equal(tiled.values[8:11, 0:4], values[0])
    assert np.isnan(tiled.values[3]).all() and np.isnan(tiled.values[:, 4]).all()
    assert np.isnan(tiled.values[8:11, 5:9]).all()  # the unused last tile
    assert set(np.unique(tiled.channels[0:3, 0:4])) == {4}
    assert (tiled.channels[np.isnan(tiled.values)] == -1).all()


def test_montage_is_roughly_square_and_per_map_scale_spans_minus_one_to_one():
    tiled = viz.montage(maps(64, 8, 8))
    assert (tiled.rows, tiled.columns) == (8, 8)
    scaled = viz.montage(maps(3) * np.array([1, 10, 100], np.float32)[:, None, None], per_map_scale=True, columns=3)
    for column in range(3):
        tile = scaled.values[:, column * 5 : column * 5 + 4]
        assert np.nanmax(np.abs(tile)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="channels, height, width"):
        viz.montage(np.zeros((3, 4)))


def test_feature_grid_is_one_heatmap_with_channel_hover_and_symmetric_range():
    values = maps(200, 6, 6)
    figure = viz.feature_grid_figure(values)
    assert len(figure.data) == 1 and figure.data[0].type == "heatmap"
    trace = figure.data[0]
    tiled = viz.montage(values)
    np.testing.assert_array_equal(trace.z, tiled.values)
    np.testing.assert_array_equal(trace.customdata, np.maximum(tiled.channels, 0))
    assert trace.customdata.dtype == np.uint8
    assert "channel %{customdata}" in trace.hovertemplate and "%{z" in trace.hovertemplate
    limit = float(np.abs(values).max())
    assert figure.layout.coloraxis.cmin == pytest.approx(-limit) and figure.layout.coloraxis.cmax == pytest.approx(
        limit
    )
    assert figure.layout.yaxis.autorange == "reversed"
    assert viz.feature_grid_figure(maps(300, 2, 2)).data[0].customdata.dtype == np.uint16


def test_per_map_scale_keeps_raw_values_in_hover():
    values = maps(4) * 7
    trace = viz.feature_grid_figure(values, per_map_scale=True).data[0]
    assert trace.customdata.shape == (*trace.z.shape, 2)
    raw = viz.montage(values).values
    np.testing.assert_allclose(trace.customdata[..., 1], raw)
    assert np.nanmax(np.abs(trace.z)) == pytest.approx(1.0)
    assert "customdata[1]" in trace.hovertemplate


def test_explorer_grids_are_three_traces_and_difference_is_after_minus_before():
    before, after = maps(6, seed=1), maps(6, seed=2)
    order = np.array([5, 0, 1, 2, 3, 4])
    figure = viz.explorer_grids_figure(before, after, order=order)
    assert [trace.name for trace in figure.data] == ["before", "after", "difference"]
    np.testing.assert_allclose(figure.data[2].z, viz.montage(after - before, order).values)
    np.testing.assert_array_equal(figure.data[0].customdata[0:3, 0:4], 5)
    limit = float(np.abs(np.concatenate([before, after])).max())
    assert figure.layout.coloraxis.cmax == pytest.approx(limit)
    assert figure.layout.coloraxis2.cmax == pytest.approx(float(np.abs(after - before).max()))
    assert figure.data[2].coloraxis == "coloraxis2"


def test_site_column_has_one_trace_per_grid_and_gate_with_shared_ranges():
    before, after = maps(6, seed=1), maps(6, seed=2)
    channel, spatial = np.array([0.2, 0.9, 0.5, 0.1, 0.3, 0.6], np.float32), np.full((3, 4), 0.5, np.float32)
    stages = [StageSummary("channel", "channel", channel), StageSummary("spatial", "spatial", spatial)]
    figure = viz.site_column_figure(before, after, stages, limit=42.0, gate_upper=1.5)
    assert [trace.type for trace in figure.data] == ["heatmap", "heatmap", "bar", "heatmap"]
    assert (figure.layout.coloraxis.cmin, figure.layout.coloraxis.cmax) == (-42.0, 42.0)
    np.testing.assert_array_equal(figure.data[1].z, viz.montage(after).values)
    np.testing.assert_allclose(figure.data[2].y, channel)  # by channel index, not sorted
    assert tuple(figure.layout.yaxis3.range) == (0.0, 1.5)
    assert figure.layout.yaxis4.autorange == "reversed" and figure.layout.yaxis3.autorange != "reversed"
    assert [a.text for a in figure.layout.annotations] == ["before", "after", "channel gate", "spatial gate (0 to 1)"]
    identity = viz.site_column_figure(before, before)
    assert len(identity.data) == 2
    assert identity.layout.coloraxis.cmax == pytest.approx(float(np.abs(before).max()))


def test_channel_gate_sorted_bars_name_their_channels():
    gate = np.array([0.2, 0.9, 0.5, 0.1], np.float32)
    figure = viz.channel_gate_figure(gate, upper=1.5)
    assert len(figure.data) == 1
    np.testing.assert_allclose(figure.data[0].y, [0.9, 0.5, 0.2, 0.1])
    np.testing.assert_array_equal(figure.data[0].customdata, [1, 2, 0, 3])
    assert tuple(figure.layout.yaxis.range) == (0.0, 1.5)
    unsorted = viz.channel_gate_figure(gate, sort=False)
    np.testing.assert_allclose(unsorted.data[0].y, gate)


def test_spatial_gate_and_overlay_geometry():
    gate = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    heatmap = viz.spatial_gate_figure(gate)
    assert (heatmap.data[0].zmin, heatmap.data[0].zmax) == (0.0, 1.0)
    overlay = viz.spatial_overlay_figure(np.zeros((64, 32, 3), np.uint8), gate, opacity=0.4)
    assert [trace.type for trace in overlay.data] == ["image", "heatmap"]
    cells = overlay.data[1]
    assert (cells.dx, cells.dy) == (8.0, 16.0)  # each gate cell covers 8 x 16 image pixels
    assert cells.x0 == pytest.approx(3.5) and cells.y0 == pytest.approx(7.5)
    assert cells.opacity == 0.4


def test_statistics_and_model_card_figures():
    histogram = viz.gate_histogram_figure({"channel": np.random.rand(50), "spatial": np.random.rand(20)})
    assert [trace.name for trace in histogram.data] == ["channel gate", "spatial gate"]
    assert len(histogram.data[1].x) == 20
    ratio, mean, std = np.array([0.5, 1.0, 2.0]), np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.1, 0.2])
    both = viz.channel_statistics_figure(ratio, mean, std)
    assert len(both.data) == 2 and both.layout.yaxis2.type == "log"
    np.testing.assert_allclose(both.data[0].error_y.array, std)
    assert len(viz.channel_statistics_figure(ratio).data) == 1
    cards = viz.model_cards_figure(["a", "b"], [91.0, None], [80.0, 70.0], [500_000, 600_000], [2_000_000, 3_000_000])
    assert [trace.name for trace in cards.data] == ["weighting on", "weighting off", "parameters", "multiply-adds"]
    assert list(cards.data[0].y) == [91.0, None]
    np.testing.assert_allclose(cards.data[2].y, [0.5, 0.6])
    np.testing.assert_allclose(cards.data[3].y, [2.0, 3.0])
    assert not cards.layout.annotations[2:]  # only the two subplot titles
    unknown = viz.model_cards_figure(["a"], [None], [None], [1], [1])
    assert unknown.layout.annotations[-1].text == "no accuracy recorded"


def test_symmetric_limit():
    assert viz.symmetric_limit(np.array([-3.0, 2.0]), np.array([1.0])) == 3.0
    assert viz.symmetric_limit(np.zeros(3)) == 1.0
    assert viz.symmetric_limit(np.array([])) == 1.0


def test_viz_imports_neither_streamlit_nor_torch():
    code = "import sys, fmw.figures; print(sorted({'streamlit', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
