"""AppTest of the dashboard's issue-5 pages: Attribution (input and site methods, target class, IG's
delta), Weighting off (table, chart, attributions site by site), Gate statistics (batch and uploaded
JSON), and the downloads (CSV, NPZ, HTML) of Compare, Layer explorer and Attribution."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import skimage.data
import torch

from fmw.analysis import analyse_image, prepare_image
from fmw.analysis.ablation import compare_weighting_off
from fmw.analysis.attribution import attribute_input, attribute_site
from fmw.analysis.stats import gate_statistics
from fmw.io import load_checkpoint
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, TIMEOUT, Downloads, array, figures, restore_threads, widget  # noqa: F401


@pytest.fixture
def checkpoints(tmp_path, monkeypatch, restore_threads):  # noqa: F811
    directory = tmp_path / "checkpoints"
    make_checkpoint(directory / "channel.safetensors", "channel", seed=3, logit_scale=20.0)  # decisive outputs
    make_checkpoint(directory / "cbam.safetensors", "cbam", seed=4)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    return directory


@pytest.fixture
def downloads(monkeypatch) -> Downloads:
    return Downloads(monkeypatch)


@pytest.fixture
def app(checkpoints, downloads):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def open_page(at, page: str, model: str = "channel"):
    at.switch_page(page).run()
    widget(at.selectbox, "Checkpoint").set_value(model).run()
    assert not at.exception and not at.error
    return at


def chelsea_inputs(checkpoints, kind: str):
    loaded = load_checkpoint(checkpoints / f"{kind}.safetensors").handle()
    prepared = prepare_image(loaded, skimage.data.chelsea())
    return loaded, prepared.inputs


def test_integrated_gradients_overlay_matches_the_library_and_reports_delta(app, checkpoints, downloads):
    open_page(app, "views/attribution.py")
    loaded, inputs = chelsea_inputs(checkpoints, "channel")
    predicted = analyse_image(loaded, skimage.data.chelsea()).predictions[0]
    assert widget(app.selectbox, "Target class").value == predicted.index
    spec = figures(app)["attribution-input"]
    assert [trace["type"] for trace in spec["data"]] == ["image", "heatmap"]
    expected = attribute_input(loaded.model, inputs, target=predicted.index, n_steps=16, internal_batch_size=16)
    overlay = array(spec["data"][1]["z"])
    assert overlay.shape == (32, 32)
    np.testing.assert_allclose(overlay, expected.maps[0], rtol=1e-4, atol=1e-6)
    assert f"for {predicted.class_name}" in spec["layout"]["title"]["text"]
    assert app.metric[0].label == "Convergence delta"
    assert float(app.metric[0].value) == pytest.approx(float(expected.delta[0]), rel=1e-2, abs=1e-5)

    other = (predicted.index + 1) % 10
    widget(app.selectbox, "Target class").set_value(other).run()
    assert f"for {loaded.class_names[other]}" in figures(app)["attribution-input"]["layout"]["title"]["text"]

    npz, page = [downloads.fetch(button) for button in app.get("download_button")]
    assert npz.mime == "application/octet-stream" and npz.file_name.endswith(".npz")
    arrays = np.load(io.BytesIO(npz.data))
    assert arrays["attributions"].shape == (1, 3, 32, 32) and arrays["crop"].shape == (300, 300, 3)  # centre crop
    assert arrays["targets"].tolist() == [other]
    assert page.mime == "text/html" and b"plotly" in page.data and len(page.data) > 1_000_000


@pytest.mark.parametrize("method", ["Saliency", "Occlusion"])
def test_other_input_methods_draw_one_overlay(app, method):
    open_page(app, "views/attribution.py")
    widget(app.selectbox, "Method").set_value(method).run()
    assert not app.exception and not app.error
    spec = figures(app)["attribution-input"]
    assert array(spec["data"][1]["z"]).shape == (32, 32)
    assert not app.metric, "only Integrated Gradients has a convergence delta"


def test_grad_cam_at_a_site_shows_both_sides(app, checkpoints, downloads):
    open_page(app, "views/attribution.py", "cbam")
    widget(app.selectbox, "Method").set_value("Grad-CAM at a site").run()
    widget(app.selectbox, "Weighting site").set_value("stages.1.weighting").run()
    assert not app.exception and not app.error
    specs = figures(app)
    assert set(specs) == {"attribution-before", "attribution-after"}
    loaded, inputs = chelsea_inputs(checkpoints, "cbam")
    expected = attribute_site(loaded.model, inputs, "stages.1.weighting", "grad_cam")
    for side, maps in (("before", expected.maps_before), ("after", expected.maps_after)):
        overlay = array(specs[f"attribution-{side}"]["data"][1]["z"])
        assert overlay.shape == (7, 7)
        np.testing.assert_allclose(overlay, maps[0], rtol=1e-4, atol=1e-6)
    assert "output side (after weighting)" in specs["attribution-after"]["layout"]["title"]["text"]
    files = [downloads.fetch(button) for button in app.get("download_button")]
    assert [file.mime for file in files] == ["application/octet-stream", "text/html", "text/html"]
    arrays = np.load(io.BytesIO(files[0].data))
    assert arrays["before"].shape == arrays["after"].shape == (1, 1, 7, 7)


def test_weighting_off_table_changes_site_by_site(app, checkpoints):
    open_page(app, "views/weighting_off.py")
    rows = app.table[0].value
    sites = ["stages.0.weighting", "stages.1.weighting", "stages.2.weighting"]
    assert list(rows["switched off"]) == ["weighting on", *sites, "all sites"]
    loaded, inputs = chelsea_inputs(checkpoints, "channel")
    expected = compare_weighting_off(loaded.model, inputs, loaded.class_names).table(0)
    target = expected[0]["target"]
    assert list(rows[f"p({target})"]) == [f"{row['p(target)']:.2%}" for row in expected]
    assert rows.iloc[0]["change"] == "+0.00%"
    assert rows[f"p({target})"].iloc[1] != rows[f"p({target})"].iloc[0], "switching a site off changes the output"
    bars = figures(app)["off-predictions"]["data"][0]
    np.testing.assert_allclose(array(bars["x"]), [row["p(target)"] for row in expected], rtol=1e-5)

    chooser = next(m for m in app.multiselect if m.label == "Sites to switch off")
    chooser.set_value(["stages.2.weighting"]).run()
    assert list(app.table[0].value["switched off"]) == ["weighting on", "stages.2.weighting", "all sites"]

    widget(app.radio, "Replace each gate by").set_value("its mean over the sidebar's images").run()
    assert not app.exception and not app.error
    assert any("Mean gates over the 1 image(s)" in caption.value for caption in app.caption)
    # one image: its own gates are the mean, so replacing them by the mean changes nothing
    assert set(app.table[0].value["change"]) == {"+0.00%"}

    app.toggle(key="off-attribute").set_value(True).run()
    assert not app.exception and not app.error
    traces = figures(app)["off-attributions"]["data"]
    assert [trace["name"] for trace in traces] == ["weighting on", "stages.2.weighting", "all sites"]
    assert all(array(trace["z"]).shape == (32, 32) for trace in traces)


def test_gate_statistics_of_the_batch_and_of_an_uploaded_file(app, checkpoints):
    app.multiselect(key="samples").set_value(["chelsea", "coffee", "rocket"]).run()
    open_page(app, "views/statistics.py")
    assert any("grouped by the class the model **predicts**" in info.value for info in app.info)
    loaded = load_checkpoint(checkpoints / "channel.safetensors").handle()
    photos = [getattr(skimage.data, name)() for name in ("chelsea", "coffee", "rocket")]
    inputs = torch.cat([prepare_image(loaded, rgb).inputs for rgb in photos])
    expected = gate_statistics(loaded.model, inputs, loaded.class_names)
    specs = figures(app)
    assert list(np.flatnonzero(expected.class_counts)) == [7], "all three photos are predicted 'horse'"
    assert "statistics-specificity" not in specs, "undefined with one class: said, not drawn empty"
    assert any("all predicted horse" in info.value for info in app.info)
    heatmap = specs["statistics-heatmap-channel"]["data"][0]
    present = np.flatnonzero(expected.class_counts)
    stage = expected.sites[0].stages["channel"]
    np.testing.assert_allclose(array(heatmap["z"]), stage.class_mean[present], rtol=1e-5)
    assert len(heatmap["y"]) == len(present) and sum(expected.class_counts) == 3

    labels = torch.arange(3)
    dataset = gate_statistics(loaded.model, inputs, loaded.class_names, labels, source="tiny split")
    upload = json.dumps(dataset.to_json()).encode()
    app.file_uploader(key="statistics-file").set_value([("stats.json", upload, "application/json")]).run()
    assert not app.exception and not app.error
    line = figures(app)["statistics-specificity"]["data"]
    assert [trace["name"] for trace in line] == ["tiny split (3 images, by label)"], "the defined series only"
    np.testing.assert_allclose(array(line[0]["x"]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(array(line[0]["y"]), [site.specificity for site in dataset.sites], rtol=1e-6)
    widget(app.radio, "Heatmaps of").set_value("uploaded file").run()
    assert len(figures(app)["statistics-heatmap-channel"]["data"][0]["y"]) == 3

    app.file_uploader(key="statistics-file").set_value([("stats.json", b"{not json", "application/json")]).run()
    assert not app.exception
    assert [error.value.split(":")[0] for error in app.error] == ["stats.json"]
    assert "statistics-heatmap-channel" in figures(app), "the batch statistics still show"


def test_compare_and_explorer_downloads(app, downloads):
    buttons = app.get("download_button")
    assert len(buttons) == 3, "gates, tensors and figure, in one menu for the whole view"
    assert widget(app.selectbox, "Model").options == ["channel", "cbam"], "every Compare column is reachable"
    csv, npz, page = [downloads.fetch(button) for button in buttons]
    assert (csv.mime, npz.mime, page.mime) == ("text/csv", "application/octet-stream", "text/html")
    lines = csv.data.decode().splitlines()
    assert lines[0] == "site,kind,stage,layout,channel,row,column,gate"
    assert len(lines) == 1 + 64 + 128 + 128  # every channel gate of the three sites
    arrays = np.load(io.BytesIO(npz.data))
    assert arrays["stages.0.weighting.before"].shape == (64, 15, 15)
    assert csv.file_name == "channel-sample_chelsea-gates.csv"
    assert b"mean before" in page.data and b"channel gate, largest first" in page.data, "the channel column's figure"
    widget(app.selectbox, "Model").set_value("cbam").run()
    csv, _, page = [downloads.fetch(button) for button in app.get("download_button")]
    assert csv.file_name == "cbam-sample_chelsea-gates.csv" and b"spatial" in csv.data
    assert b"spatial gate over the image" in page.data

    open_page(app, "views/explorer.py", "cbam")
    files = [downloads.fetch(button) for button in app.get("download_button")]
    assert [file.mime for file in files] == ["text/csv", "application/octet-stream", "text/html"]
    assert b"spatial" in files[0].data
    assert any("camera button" in caption.value for caption in app.caption)
