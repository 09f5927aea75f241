"""Every dashboard page through streamlit's AppTest: uploads (good and bad), page switches and
controls, with assertions on the predictions shown and on the plotly figures' specs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fmw.figures as viz
from dashboard.settings import SAMPLE_PHOTOS
from fmw.analysis import analyse_image, batch_statistics
from fmw.analysis.changes import SHOWN_CHANNELS, site_change
from fmw.analysis.findings import depth_finding, shipped_statistics, specificity_series
from fmw.io import CheckpointMetadata, load_checkpoint, save_checkpoint
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import build_model, count_parameters
from tests.conftest import CIFAR_CLASSES, REPO, make_checkpoint
from tests.dashboard_helpers import APP, array, figures, steepest_channel_rise

KINDS = ("none", "scale", "spatial", "channel", "cbam", "eca")


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
    result = analyse_image(load_checkpoint(checkpoints / f"{kind}.safetensors").handle(), rgb, resolution)
    return [f"| {p.class_name} | {p.probability:.1%} |" for p in result.predictions]


def compare_traces(spec: dict) -> dict[str, dict]:
    return {trace["name"]: trace for trace in spec["data"]}


def test_compare_opens_on_a_sample_with_every_checkpoint(app, checkpoints):
    import skimage.data

    assert selectbox(app, "Image").value == "sample: chelsea"
    assert app.multiselect(key="checkpoints").values == list(KINDS)
    tables = [m.value for m in app.markdown if m.value.startswith("| class | p |")]
    assert len(tables) == len(KINDS)
    for kind, table in zip(KINDS, tables):
        assert table.splitlines()[2:] == expected_predictions(checkpoints, kind, skimage.data.chelsea())
    specs = figures(app)
    assert set(specs) == {f"compare-{kind}" for kind in KINDS}, "one chart per checkpoint column"
    for kind in KINDS:
        site = analyse_image(
            load_checkpoint(checkpoints / f"{kind}.safetensors").handle(), skimage.data.chelsea()
        ).sites[0]
        change = site_change(site)
        traces = compare_traces(specs[f"compare-{kind}"])
        gates = ["image", "spatial gate"] * (site.spatial_gate is not None) + ["channel gate"] * (
            site.channel_gate is not None
        )
        shown = [f"channel {c.channel} {side}" for c in change.channels for side in ("before", "after")]
        assert list(traces) == ["mean before", "mean after", *gates, *shown]
        assert len(gates) == {"none": 0, "cbam": 3, "spatial": 2}.get(kind, 1)
        np.testing.assert_allclose(array(traces["mean before"]["z"]), site.before.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(array(traces["mean after"]["z"]), site.after.mean(axis=0), rtol=1e-5, atol=1e-6)
        for channel in change.channels:
            before, after = traces[f"channel {channel.channel} before"], traces[f"channel {channel.channel} after"]
            assert array(before["z"]).shape == (15, 15), "one 15x15 map per trace, not a montage of 64"
            np.testing.assert_array_equal(array(before["z"]), site.before[channel.channel])
            np.testing.assert_array_equal(array(after["z"]), site.after[channel.channel])
    ranges = {specs[f"compare-{kind}"]["layout"]["coloraxis"]["cmax"] for kind in KINDS}
    assert len(ranges) == 1, "columns must share one colour range"
    assert len({specs[f"compare-{kind}"]["layout"]["coloraxis2"]["cmax"] for kind in KINDS}) == 1
    cbam = analyse_image(load_checkpoint(checkpoints / "cbam.safetensors").handle(), skimage.data.chelsea()).sites[0]
    traces = compare_traces(specs["compare-cbam"])
    order = np.argsort(-cbam.channel_gate, kind="stable")
    np.testing.assert_allclose(array(traces["channel gate"]["y"]), cbam.channel_gate[order], rtol=1e-6)
    np.testing.assert_array_equal(array(traces["channel gate"]["customdata"]), order)
    np.testing.assert_allclose(array(traces["spatial gate"]["z"]), cbam.spatial_gate, rtol=1e-6)
    assert [trace["type"] for trace in specs["compare-spatial"]["data"]][:4] == [
        "heatmap",
        "heatmap",
        "image",
        "heatmap",
    ]
    gate_ranges = set()
    for kind in ("channel", "eca", "cbam"):
        spec = specs[f"compare-{kind}"]
        axis = compare_traces(spec)["channel gate"]["yaxis"].replace("y", "yaxis")
        gate_ranges.add(tuple(spec["layout"][axis]["range"]))
    assert len(gate_ranges) == 1, "channel gates share one axis range across columns"


def test_depth_and_resolution_controls(app):
    app.select_slider(key="compare-depth").set_value(1).run()
    traces = compare_traces(figures(app)["compare-channel"])
    assert array(traces["mean before"]["z"]).shape == (7, 7)  # site 2: 128 maps of 7x7
    assert sum(name.startswith("channel ") and name.endswith(" before") for name in traces) == SHOWN_CHANNELS
    assert any(
        c.value.startswith("`stages.1.weighting` (site 2 of 3) · channel · 128 maps of 7×7") for c in app.caption
    )
    app.select_slider(key="resolution").set_value(64).run()
    assert not app.exception
    assert any("accuracy is for 32 px" in caption.value for caption in app.caption)
    traces = compare_traces(figures(app)["compare-channel"])
    assert array(traces["mean before"]["z"]).shape == (15, 15)  # 128 maps of 15x15 at 64 px
    shown = [trace for name, trace in traces.items() if name.endswith((" before", " after"))]
    assert len(shown) == 2 + 2 * SHOWN_CHANNELS and all(array(trace["z"]).shape == (15, 15) for trace in shown)


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
    site = analyse_image(load_checkpoint(checkpoints / "cbam.safetensors").handle(), skimage.data.chelsea()).sites[0]
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

    loaded = load_checkpoint(checkpoints / "channel.safetensors").handle()
    statistics = batch_statistics([analyse_image(loaded, rgb) for rgb in [*uploads, skimage.data.chelsea()]])[0]
    mean_gate, ratio = specs["batch-channels"]["data"]
    np.testing.assert_allclose(array(mean_gate["y"]), statistics.channel_gate_mean, rtol=1e-5)
    np.testing.assert_allclose(array(ratio["y"]), statistics.energy_ratio_mean, rtol=1e-5)
    app.radio(key="batch-site").set_value("stages.1.weighting").run()
    assert array(figures(app)["batch-histogram"]["data"][0]["x"]).shape == (3 * 128,)


def test_batch_statistics_open_on_every_sample_photo_when_the_sidebar_has_one_image(app):
    """One image makes no distribution: the view adds the other sample photos, says so, and undoes it."""
    app.switch_page("views/batch.py").run()
    assert not app.exception
    box = app.checkbox(key="batch-samples")
    assert box.value is True and "astronaut, coffee, rocket" in box.label
    assert any(f"{len(SAMPLE_PHOTOS)} image(s) analysed by" in c.value for c in app.caption)
    assert figures(app)["batch-histogram"]["layout"]["title"]["text"].endswith(f"over {len(SAMPLE_PHOTOS)} image(s)")
    box.uncheck().run()
    assert any("1 image(s) analysed by" in c.value for c in app.caption)
    assert figures(app)["batch-histogram"]["layout"]["title"]["text"].endswith("over 1 image(s)")


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

    import fmw.analysis.memory

    real = fmw.analysis.run_with_memory_fallback
    attempts = []

    def on_a_full_gpu(work, device, batch_size=1):
        def flaky(on, batch):
            attempts.append(on)
            if on == "cuda":
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
            return work(on, batch)

        return real(flaky, "cuda", batch_size)

    monkeypatch.setattr(fmw.analysis.memory, "run_with_memory_fallback", on_a_full_gpu)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "ran out of memory" in w.value]
    assert len(warnings) == len(KINDS) and all("on the CPU" in w for w in warnings)
    assert attempts.count("cuda") == len(KINDS) and attempts.count("cpu") == len(KINDS)
    tables = [m.value for m in at.markdown if m.value.startswith("| class | p |")]
    assert len(tables) == len(KINDS), "predictions are still shown after the fallback"


def test_pages_about_gates_preselect_a_model_that_has_them(app, checkpoints):
    from dashboard.catalog import header_weighting

    assert [header_weighting(str(checkpoints / f"{kind}.safetensors"), 0.0) for kind in KINDS] == list(KINDS)
    # each view opens on the model most worth seeing there: CBAM's two gates to explore and to histogram, the
    # spatial gate for attribution; weighting off: the largest recorded loss of accuracy without the gates
    # (only eca records one in this fixture: 91.25% -> 50%); gate statistics: the steepest rise of class
    # specificity in the shipped statistics (test_gate_statistics_open_on_the_shipped_findings), and, as
    # this fixture ships none, the first model with weighting
    expected = {
        "views/explorer.py": "cbam",
        "views/attribution.py": "spatial",
        "views/weighting_off.py": "eca",
        "views/statistics.py": next(kind for kind in KINDS if kind != "none"),
        "views/batch.py": "cbam",
    }
    for page, kind in expected.items():
        app.switch_page(page).run()
        assert not app.exception and not app.error
        assert selectbox(app, "Checkpoint").value == kind != "none", page
    app.switch_page("views/weighting_off.py").run()
    assert app.table, "the preselected model has gates, so the page shows its table at once"
    broken = checkpoints / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert header_weighting(str(broken), 1.0) == "", "an unreadable header is only a missing hint"


def test_gate_statistics_say_why_a_chart_is_missing(app):
    app.switch_page("views/statistics.py").run()
    selectbox(app, "Checkpoint").set_value("scale").run()  # the one sample photo: a single predicted class
    assert "statistics-specificity" not in figures(app), "no empty chart"
    notes = [info.value for info in app.info if "needs images of at least two classes" in info.value]
    assert len(notes) == 1 and "all predicted" in notes[0] and "scale (sidebar images)" in notes[0]
    assert "statistics-heatmap-channel" in figures(app), "the per-class heatmap of the one class still shows"
    selectbox(app, "Checkpoint").set_value("none").run()
    assert not app.exception and not app.error
    assert any("none has no weighting site with a gate" in info.value for info in app.info)
    assert not [name for name in figures(app) if name.startswith("statistics-")]


def test_compare_says_which_model_it_is_loading(checkpoints, monkeypatch):
    """A freshly started server loads and runs each model on first use: the Compare view names the
    one in hand in a progress bar, in order, and removes the bar once all are done."""
    import streamlit
    from streamlit.delta_generator import DeltaGenerator
    from streamlit.testing.v1 import AppTest

    texts: list[str | None] = []
    real = DeltaGenerator.progress

    def recording(self, value, text=None):
        texts.append(text)
        return real(self, value, text=text)

    monkeypatch.setattr(DeltaGenerator, "progress", recording)
    monkeypatch.setattr(streamlit, "progress", lambda value, text=None: recording(streamlit._main, value, text))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    steps = [f"Loading and running {kind} ({number} of {len(KINDS)})…" for number, kind in enumerate(KINDS, 1)]
    assert texts == ["Loading and running the models…", *steps]
    assert not at.get("progress"), "the bar is gone once the charts are drawn"


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(REPO / "checkpoints"))
    threads = torch.get_num_threads()
    yield REPO / "checkpoints"
    torch.set_num_threads(threads)


def test_gate_statistics_open_on_the_shipped_findings(shipped):
    """With the shipped checkpoints, Gate statistics opens on their shipped test-split statistics:
    every kind's and stage's specificity by depth, the finding in words, and the mean gate per class
    at every site of the model whose channel gate grows most class-specific with depth (ECA's, in the
    files shipped today), all equal to what fmw reads from the files."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run().switch_page("views/statistics.py").run()
    assert not at.exception and not at.error
    series = [
        line
        for kind in WEIGHTING_LAYERS  # every shipped checkpoint, in the dashboard's order
        for line in specificity_series(shipped_statistics(shipped / f"{kind}.safetensors").statistics, kind)
    ]
    specs = figures(at)
    lines = specs["findings-specificity"]["data"]
    assert [line["name"] for line in lines] == [line.label for line in series]
    assert "cbam, spatial gate" in [line["name"] for line in lines], "both of CBAM's stages, side by side"
    for drawn, line in zip(lines, series):
        np.testing.assert_allclose(array(drawn["x"]), line.depths)
        np.testing.assert_allclose(array(drawn["y"]), line.values)
    assert any(m.value == depth_finding(series) for m in at.markdown), "the finding in words"
    kind = steepest_channel_rise(shipped, WEIGHTING_LAYERS)
    assert selectbox(at, "Checkpoint").value == kind
    assert any(caption.value.startswith(f"Opens on {kind}: ") for caption in at.caption), "and why"
    opened = shipped_statistics(shipped / f"{kind}.safetensors").statistics
    for site in opened.sites:
        heatmap = specs[f"findings-heatmap-{site.name}-channel"]["data"][0]
        np.testing.assert_allclose(array(heatmap["z"]), site.stages["channel"].class_mean, rtol=1e-6)
        assert list(heatmap["y"]) == opened.class_names
    assert "statistics-heatmap-channel" in specs, "the sidebar images' statistics still follow"


def test_shipped_statistics_of_another_checkpoint_are_refused(checkpoints):
    """A statistics file made from another version of a checkpoint (here: the shipped eca's beside a
    random-weight eca) is not shown as that checkpoint's findings; the page says why and how to remake it."""
    from streamlit.testing.v1 import AppTest

    (checkpoints / "stats").mkdir()
    (checkpoints / "stats" / "eca.json").write_bytes((REPO / "checkpoints" / "stats" / "eca.json").read_bytes())
    at = AppTest.from_file(APP, default_timeout=120).run().switch_page("views/statistics.py").run()
    assert not at.exception and not at.error
    assert "findings-specificity" not in figures(at)
    assert any("no findings to show" in info.value for info in at.info)
    stale = [c.value for c in at.caption if "was made from another version of eca.safetensors" in c.value]
    assert len(stale) == 1 and f"python -m fmw stats {checkpoints / 'eca.safetensors'} --split test" in stale[0]
    assert sum("no statistics at" in c.value for c in at.caption) == len(KINDS) - 1, "the others have none"
