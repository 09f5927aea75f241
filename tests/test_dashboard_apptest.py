"""Every dashboard page through streamlit's AppTest: uploads (good and bad), page switches and
controls, with assertions on the predictions shown and on the plotly figures' specs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fmw.figures as viz
from fmw.analysis import analyse_image, batch_statistics
from fmw.io import CheckpointMetadata, load_checkpoint, save_checkpoint
from fmw.models import build_model, count_parameters
from tests.conftest import CIFAR_CLASSES, make_checkpoint
from tests.dashboard_helpers import APP, array, figures

KINDS = ("none", "scale", "spatial", "channel", "cbam", "eca")
GATE_TRACES = {"none": 0, "cbam": 2}  # gate traces per Compare column; the other kinds have one


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return buffer.getvalue()


def selectbox(at, label: str):
    return next(widget for widget in at.selectbox if widget.label == label)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    for seed, kind in enumerate(KINDS[:-1], start=11):
        make_checkpoint(directory / f"{kind}.safetensors", kind, seed=seed)
    torch.manual_seed(16)
    model = build_model(weighting="eca").eval()
    metadata = CheckpointMetadata(
        architecture=model.config,
        class_names=CIFAR_CLASSES,
        metrics={"test_top1": 0.9125, "test_top1_weighting_off": 0.5},
    )
    save_checkpoint(directory / "eca.safetensors", model, metadata)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    threads = torch.get_num_threads()
    yield directory
    torch.set_num_threads(threads)  # the app sets one thread for itself; do not leak that into other tests


@pytest.fixture
def app(checkpoints):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    return at


def expected_predictions(checkpoints, kind: str, rgb: np.ndarray, resolution: int | None = None) -> list[str]:
    result = analyse_image(load_checkpoint(checkpoints / f"{kind}.safetensors"), rgb, resolution)
    return [f"| {p.class_name} | {p.probability:.1%} |" for p in result.predictions]


def test_compare_opens_on_a_sample_with_every_checkpoint(app, checkpoints):
    import skimage.data

    assert selectbox(app, "Image").value == "sample: chelsea"
    assert app.multiselect(key="checkpoints").value == list(KINDS)
    tables = [m.value for m in app.markdown if m.value.startswith("| class | p |")]
    assert len(tables) == len(KINDS)
    for kind, table in zip(KINDS, tables):
        assert table.splitlines()[2:] == expected_predictions(checkpoints, kind, skimage.data.chelsea())
    specs = figures(app)
    assert set(specs) == {f"compare-{kind}" for kind in KINDS}, "one chart per checkpoint column"
    for kind in KINDS:
        traces = specs[f"compare-{kind}"]["data"]
        assert len(traces) == 2 + GATE_TRACES.get(kind, 1)
        assert [trace["name"] for trace in traces[:2]] == ["before", "after"]
        assert array(traces[0]["z"]).shape == (8 * 16 - 1, 8 * 16 - 1)  # 64 maps of 15x15 in an 8x8 montage
    ranges = {specs[f"compare-{kind}"]["layout"]["coloraxis"]["cmax"] for kind in KINDS}
    assert len(ranges) == 1, "columns must share one colour range"
    cbam = analyse_image(load_checkpoint(checkpoints / "cbam.safetensors"), skimage.data.chelsea()).sites[0]
    _before, after, channel, spatial = specs["compare-cbam"]["data"]
    np.testing.assert_array_equal(array(after["z"]), viz.montage(cbam.after).values)
    np.testing.assert_allclose(array(channel["y"]), cbam.channel_gate, rtol=1e-6)
    np.testing.assert_allclose(array(spatial["z"]), cbam.spatial_gate, rtol=1e-6)
    assert [trace["type"] for trace in specs["compare-spatial"]["data"]] == ["heatmap", "heatmap", "heatmap"]
    gate_ranges = {tuple(specs[f"compare-{kind}"]["layout"]["yaxis3"]["range"]) for kind in ("channel", "eca", "cbam")}
    assert len(gate_ranges) == 1, "channel gates share one axis range across columns"


def test_depth_and_resolution_controls(app):
    app.select_slider(key="compare-depth").set_value(1).run()
    spec = figures(app)["compare-channel"]
    assert array(spec["data"][0]["z"]).shape == (11 * 8 - 1, 12 * 8 - 1)  # 128 maps of 7x7: 11 rows of 12
    app.select_slider(key="resolution").set_value(64).run()
    assert not app.exception
    assert any("accuracy is for 32 px" in caption.value for caption in app.caption)
    spec = figures(app)["compare-channel"]
    assert array(spec["data"][0]["z"]).shape == (11 * 16 - 1, 12 * 16 - 1)  # 128 maps of 15x15 at 64 px: 11 rows of 12


def test_uploads_good_and_bad_files_each_get_their_own_outcome(app, checkpoints):
    good = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    png = encoded(good, "PNG")
    jpeg = encoded(good, "JPEG")
    app.file_uploader(key="uploads").set_value(
        [
            ("notes.png", b"this is not an image", "image/png"),
            ("good.png", png, "image/png"),
            ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"),
        ]
    ).run()
    assert not app.exception
    errors = [error.value for error in app.error]
    assert len(errors) == 2
    assert errors[0].startswith("notes.png: not a supported image")
    assert errors[1].startswith("cut.jpg: the JPEG data is damaged or truncated")
    assert selectbox(app, "Image").value == "good.png"
    assert selectbox(app, "Image").options == ["good.png", "sample: chelsea"]
    table = next(m.value for m in app.markdown if m.value.startswith("| class"))
    assert table.splitlines()[2:] == expected_predictions(checkpoints, "none", good)
    assert all(spec["layout"]["meta"]["image"] == "good.png" for spec in figures(app).values())


def test_layer_explorer_orders_channels_and_shows_both_cbam_stages(app, checkpoints):
    import skimage.data

    app.switch_page("views/explorer.py").run()
    assert not app.exception
    selectbox(app, "Checkpoint").set_value("cbam").run()
    specs = figures(app)
    assert set(specs) == {"explorer-grids", "explorer-channel", "explorer-spatial", "explorer-overlay"}
    grids = specs["explorer-grids"]["data"]
    assert [trace["name"] for trace in grids] == ["before", "after", "difference"]
    site = analyse_image(load_checkpoint(checkpoints / "cbam.safetensors"), skimage.data.chelsea()).sites[0]
    np.testing.assert_allclose(array(grids[2]["z"]), viz.montage(site.after - site.before).values, atol=1e-6)
    assert [trace["type"] for trace in specs["explorer-overlay"]["data"]] == ["image", "heatmap"]
    assert array(specs["explorer-channel"]["data"][0]["customdata"])[0] == int(np.argmax(site.channel_gate))

    app.radio(key="explorer-order").set_value("gate").run()
    channels = array(figures(app)["explorer-grids"]["data"][0]["customdata"])
    assert channels[0, 0] == int(np.argmax(site.channel_gate))
    app.radio(key="explorer-scale").set_value("per map").run()
    before = figures(app)["explorer-grids"]["data"][0]
    assert array(before["customdata"]).shape[-1] == 2
    assert np.nanmax(np.abs(array(before["z"]))) == pytest.approx(1.0)

    selectbox(app, "Weighting site").set_value("stages.2.weighting").run()
    assert array(figures(app)["explorer-spatial"]["data"][0]["z"]).shape == (3, 3)
    selectbox(app, "Checkpoint").set_value("none").run()
    assert set(figures(app)) == {"explorer-grids"}
    assert app.radio(key="explorer-order").options == ["index", "energy change"]


def test_batch_statistics_over_uploads_and_samples(app, checkpoints):
    rng = np.random.default_rng(1)
    uploads = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(2)]
    app.file_uploader(key="uploads").set_value(
        [(f"u{i}.png", encoded(image, "PNG"), "image/png") for i, image in enumerate(uploads)]
    ).run()
    app.switch_page("views/batch.py").run()
    selectbox(app, "Checkpoint").set_value("channel").run()
    assert not app.exception
    assert any("3 image(s) analysed by **channel**" in c.value for c in app.caption)
    specs = figures(app)
    histogram = specs["batch-histogram"]["data"]
    assert [trace["name"] for trace in histogram] == ["channel gate"]
    assert array(histogram[0]["x"]).shape == (3 * 64,)
    import skimage.data

    loaded = load_checkpoint(checkpoints / "channel.safetensors")
    statistics = batch_statistics([analyse_image(loaded, rgb) for rgb in [*uploads, skimage.data.chelsea()]])[0]
    mean_gate, ratio = specs["batch-channels"]["data"]
    np.testing.assert_allclose(array(mean_gate["y"]), statistics.channel_gate_mean, rtol=1e-5)
    np.testing.assert_allclose(array(ratio["y"]), statistics.energy_ratio_mean, rtol=1e-5)
    app.radio(key="batch-site").set_value("stages.1.weighting").run()
    assert array(figures(app)["batch-histogram"]["data"][0]["x"]).shape == (3 * 128,)


def test_models_page_shows_cards_as_table_and_chart(app, checkpoints):
    app.switch_page("views/models.py").run()
    assert not app.exception
    rows = app.table[0].value
    assert list(rows["checkpoint"]) == list(KINDS)
    eca = rows[rows["checkpoint"] == "eca"].iloc[0]
    assert (eca["top-1 (%)"], eca["top-1, weighting off (%)"]) == ("91.25", "50.00")
    assert rows[rows["checkpoint"] == "none"].iloc[0]["top-1 (%)"] == "—"
    chart = figures(app)["models-chart"]["data"]
    assert [trace["name"] for trace in chart] == ["weighting on", "weighting off", "parameters", "multiply-adds"]
    assert chart[0]["y"][-1] == pytest.approx(91.25) and chart[0]["y"][0] is None
    eca_parameters = count_parameters(load_checkpoint(checkpoints / "eca.safetensors").model)
    assert array(chart[2]["y"])[-1] == pytest.approx(eca_parameters / 1e6)
    assert eca["parameters"] == f"{eca_parameters:,}"


def test_no_checkpoints_is_said_clearly_and_the_app_still_works(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(tmp_path / "empty"))
    threads = torch.get_num_threads()
    try:
        at = AppTest.from_file(APP, default_timeout=120).run()
        assert not at.exception and not at.error
        assert any("No checkpoints found" in warning.value for warning in at.warning)
        assert any("no checkpoints" in info.value for info in at.info)
        assert len(at.get("image")) == 1  # the sample photo is still shown
        for page in ("views/explorer.py", "views/batch.py", "views/models.py"):
            at.switch_page(page).run()
            assert not at.exception and not at.error and at.info
    finally:
        torch.set_num_threads(threads)


def test_a_broken_checkpoint_is_reported_and_the_others_still_compared(checkpoints):
    from streamlit.testing.v1 import AppTest

    (checkpoints / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert [error.value for error in at.error] == [
        (f"broken: {checkpoints / 'broken.safetensors'}: the safetensors header is not valid JSON; the file is damaged")
    ]
    assert len([m for m in at.markdown if m.value.startswith("| class | p |")]) == len(KINDS)


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_notice(checkpoints, monkeypatch):
    """The analysis path runs through fmw.analysis.run_with_memory_fallback: a CUDA out-of-memory
    error (simulated: this machine may have no GPU) reruns on the CPU and the page says so."""
    from streamlit.testing.v1 import AppTest

    import fmw.analysis.service

    real = fmw.analysis.run_with_memory_fallback
    attempts = []

    def on_a_full_gpu(work, device, batch_size=1):
        def flaky(on, batch):
            attempts.append(on)
            if on == "cuda":
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
            return work(on, batch)

        return real(flaky, "cuda", batch_size)

    monkeypatch.setattr(fmw.analysis.service, "run_with_memory_fallback", on_a_full_gpu)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "ran out of memory" in w.value]
    assert len(warnings) == len(KINDS) and all("on the CPU" in w for w in warnings)
    assert attempts.count("cuda") == len(KINDS) and attempts.count("cpu") == len(KINDS)
    tables = [m.value for m in at.markdown if m.value.startswith("| class | p |")]
    assert len(tables) == len(KINDS), "predictions are still shown after the fallback"


def test_pages_about_gates_preselect_a_model_that_has_them(app, checkpoints):
    from dashboard.registry import header_weighting

    assert [header_weighting(str(checkpoints / f"{kind}.safetensors"), 0.0) for kind in KINDS] == list(KINDS)
    assert selectbox(app.switch_page("views/explorer.py").run(), "Checkpoint").value == KINDS[0] == "none"
    for page in ("views/weighting_off.py", "views/statistics.py", "views/batch.py"):
        first_weighted = KINDS[1]
        app.switch_page(page).run()
        assert not app.exception and not app.error
        assert selectbox(app, "Checkpoint").value == first_weighted != "none"
    app.switch_page("views/weighting_off.py").run()
    assert app.table, "the preselected model has gates, so the page shows its table at once"
    broken = checkpoints / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert header_weighting(str(broken), 1.0) == "", "an unreadable header is only a missing hint"


def test_gate_statistics_say_why_a_chart_is_missing(app):
    app.switch_page("views/statistics.py").run()
    assert selectbox(app, "Checkpoint").value == "scale"  # the one sample photo: a single predicted class
    assert "statistics-specificity" not in figures(app), "no empty chart"
    notes = [info.value for info in app.info if "needs images of at least two classes" in info.value]
    assert len(notes) == 1 and "all predicted" in notes[0] and "scale (sidebar images)" in notes[0]
    assert "statistics-heatmap-channel" in figures(app), "the per-class heatmap of the one class still shows"
    selectbox(app, "Checkpoint").set_value("none").run()
    assert not app.exception and not app.error
    assert any("none has no weighting site with a gate" in info.value for info in app.info)
    assert not [name for name in figures(app) if name.startswith("statistics-")]
