"""fmw.analysis.changes (the channels a site changed most, the channel-mean maps) and the Compare
figure built from them (fmw.figures.compare): hand-made sites with known answers, then real
checkpoints of every kind, checked trace by trace against the library's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from fmw.analysis import SiteSummary, StageSummary, analyse_image
from fmw.analysis.changes import (
    SHOWN_CHANNELS,
    change_order,
    changed_channels,
    channel_order,
    kept_energy,
    site_change,
)
from fmw.figures.compare import HIGHLIGHT_COLOUR, site_change_figure
from fmw.io import load_checkpoint


def summary(before: np.ndarray, gate: np.ndarray | None = None, spatial: np.ndarray | None = None) -> SiteSummary:
    """A site summary with ``after = before * gate`` (channel gate (C,) and/or spatial gate (H, W))."""
    after = before.copy()
    if gate is not None:
        after = after * gate[:, None, None]
    if spatial is not None:
        after = after * spatial[None]
    return SiteSummary(
        name="site",
        kind="test",
        before=before,
        after=after.astype(np.float32),
        stages=[
            StageSummary(layout, layout, g) for layout, g in (("channel", gate), ("spatial", spatial)) if g is not None
        ],
        energy_before=np.square(before).mean(axis=(1, 2)).astype(np.float32),
        energy_after=np.square(after).mean(axis=(1, 2)).astype(np.float32),
    )


def test_channels_ranked_by_amplitude_change_with_strength_breaking_ties():
    amplitudes = np.array([1.0, 4.0, 2.0, 0.0, 3.0], dtype=np.float32)
    before = np.ones((5, 3, 3), np.float32) * amplitudes[:, None, None]
    gate = np.array([0.1, 1.0, 0.5, 0.0, 0.9], dtype=np.float32)
    site = summary(before, gate)
    # amplitude change |a * g - a|: 0.9, 0, 1.0, 0, 0.3 -> channel 2, 0, 4, then the ties 1 (a = 4) and 3 (a = 0)
    assert changed_channels(site, 5).tolist() == [2, 0, 4, 1, 3]
    assert changed_channels(site, 2).tolist() == [2, 0]
    unchanged = summary(before)  # no gate: every change is 0, so the strongest channels come first
    assert changed_channels(unchanged, 3).tolist() == [1, 4, 2]
    with pytest.raises(ValueError, match="at least 1"):
        changed_channels(site, 0)


def test_site_change_keeps_the_chosen_maps_means_gates_and_energy():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(6, 4, 5)).astype(np.float32)
    gate = rng.uniform(size=6).astype(np.float32)
    spatial = rng.uniform(size=(4, 5)).astype(np.float32)
    site = summary(before, gate, spatial)
    change = site_change(site, count=3)
    chosen = changed_channels(site, 3)
    assert [channel.channel for channel in change.channels] == chosen.tolist()
    np.testing.assert_array_equal(change.before, before[chosen])
    np.testing.assert_array_equal(change.after, site.after[chosen])
    np.testing.assert_allclose(change.mean_before, before.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(change.mean_after, site.after.mean(axis=0), rtol=1e-5, atol=1e-7)
    for channel in change.channels:
        assert channel.gate == pytest.approx(float(gate[channel.channel]))
        assert channel.rms_before == pytest.approx(float(np.sqrt(np.mean(before[channel.channel] ** 2))), rel=1e-5)
        assert channel.ratio == pytest.approx(channel.rms_after / channel.rms_before)
    assert change.kept_energy == pytest.approx(float(np.sum(site.after**2) / np.sum(before**2)), rel=1e-5)
    assert kept_energy(summary(np.zeros((2, 3, 3), np.float32))) == 1.0, "a silent site kept everything"
    assert change.channel_gate is gate and change.spatial_gate is spatial


def traces_by_name(figure) -> dict[str, object]:
    return {trace.name: trace for trace in figure.data}


@pytest.mark.parametrize("kind", ["none", "scale", "spatial", "channel", "cbam", "eca", "coord", "simam"])
def test_compare_figure_draws_one_map_per_trace_with_the_librarys_values(checkpoint_factory, kind):
    loaded = load_checkpoint(checkpoint_factory(kind, seed=5)).handle()
    analysis = analyse_image(loaded, skimage.data.chelsea())
    site = analysis.sites[0]
    change = site_change(site, count=4)
    figure = site_change_figure(change, analysis.crop, limit=3.0, mean_limit=0.5, gate_upper=1.2, title="t")
    assert figure.layout.title.text == "t", "the column keeps its title whatever its gates draw over the image"
    traces = traces_by_name(figure)
    np.testing.assert_array_equal(traces["mean before"].z, change.mean_before)
    np.testing.assert_array_equal(traces["mean after"].z, change.mean_after)
    for channel in change.channels:
        np.testing.assert_array_equal(traces[f"channel {channel.channel} before"].z, site.before[channel.channel])
        np.testing.assert_array_equal(traces[f"channel {channel.channel} after"].z, site.after[channel.channel])
        assert traces[f"channel {channel.channel} after"].z.shape == site.before.shape[1:], "one map per trace"
        assert f"channel {channel.channel}" in traces[f"channel {channel.channel} before"].hovertemplate
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles[-2 * len(change.channels) :: 2] == [f"ch {channel.channel}" for channel in change.channels]
    assert figure.layout.coloraxis.cmax == 3.0 and figure.layout.coloraxis2.cmax == 0.5
    if site.channel_gate is None:
        assert "channel gate" not in traces
    else:
        bars = traces["channel gate"]
        order = np.argsort(-site.channel_gate, kind="stable")
        np.testing.assert_allclose(bars.y, site.channel_gate[order], rtol=1e-6)
        np.testing.assert_array_equal(bars.customdata, order)
        highlighted = {int(c) for c, colour in zip(order, bars.marker.color) if colour == HIGHLIGHT_COLOUR}
        assert highlighted == {channel.channel for channel in change.channels}
        gate_axis = figure.layout[f"yaxis{bars.yaxis[1:]}"]
        assert gate_axis.range[1] == 1.2
    if site.spatial_gate is None:
        assert "spatial gate" not in traces
    else:
        cells = traces["spatial gate"]
        np.testing.assert_allclose(cells.z, site.spatial_gate, rtol=1e-6)
        assert (cells.zmin, cells.zmax) == (0.0, 1.0)
        assert "row %{customdata[0]}, column %{customdata[1]}" in cells.hovertemplate
        photo = traces["image"]
        assert photo.source.startswith("data:image/jpeg;base64,")
        assert len(photo.source) < 60_000, "the photo under the gate is sent small, not as raw pixels"


def test_compare_figure_without_a_photo_draws_the_spatial_gate_alone():
    rng = np.random.default_rng(1)
    spatial = rng.uniform(size=(5, 5)).astype(np.float32)
    change = site_change(summary(rng.normal(size=(3, 5, 5)).astype(np.float32), spatial=spatial), count=2)
    figure = site_change_figure(change)
    traces = traces_by_name(figure)
    assert "image" not in traces
    np.testing.assert_allclose(traces["spatial gate"].z, spatial, rtol=1e-6)
    assert [t.name for t in figure.data if t.type == "heatmap"][:2] == ["mean before", "mean after"]
    assert figure.layout.annotations[4].text.startswith("×"), "no channel gate: the amplitude ratio is shown"


@pytest.mark.parametrize("kind", ["channel", "cbam", "coord", "simam"])
def test_compare_and_the_layer_explorer_rank_a_sites_channels_alike(checkpoint_factory, kind):
    """One definition of "changed most": Compare's channels (site_change) are the Layer explorer's first ones
    in its "energy change" order (channel_order), for every channel of the site."""
    site = analyse_image(load_checkpoint(checkpoint_factory(kind, seed=5)).handle(), skimage.data.chelsea()).sites[0]
    compare = [channel.channel for channel in site_change(site, count=site.channels).channels]
    assert compare == channel_order(site, "energy change").tolist() == change_order(site).tolist()
    assert [channel.channel for channel in site_change(site).channels] == compare[:SHOWN_CHANNELS]


def test_a_faint_channel_amplified_ranks_below_a_strong_channel_halved():
    before = np.stack([np.full((3, 3), 1e-5), np.full((3, 3), 1.0)]).astype(np.float32)
    site = summary(before, np.array([10.0, 0.5], dtype=np.float32))  # ratio x100 in energy vs x0.25
    assert changed_channels(site, 2).tolist() == [1, 0]
    assert channel_order(site, "energy change").tolist() == [1, 0]
