"""Browser tests of the dashboard as a newcomer first sees it: Debian's chromium at 1500x1000, driven
by Playwright, against a real `streamlit run` of the dashboard with the six shipped checkpoints.

What is read from the page: the on-screen width of every map in Compare and what it shows, the model,
image and predictions each view opens on, the shipped gate statistics on the Gate statistics view,
the words and hover text, an upload becoming the current image everywhere, and the addresses the
server listens on. (The progress message while models load is checked in test_dashboard_apptest.py,
where it can be seen whatever the machine's speed.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dashboard.catalog import header_weighting, header_weighting_off_drop
from dashboard.settings import DEFAULT_SAMPLE, SAMPLE_CLASSES
from fmw.analysis.findings import shipped_statistics, specificity_series
from fmw.analysis.stats import GateStatistics
from fmw.layers import WEIGHTING_LAYERS
from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    FIRST_CHART,
    REPO,
    SERVERS,
    dashboard_server,
    image_upload_input,
    listening_addresses,
    wait_for_charts,
)
from tests.dashboard_helpers import steepest_channel_rise

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_SKIP_REASON)]

CHECKPOINTS = REPO / "checkpoints"
KINDS = tuple(WEIGHTING_LAYERS)  # the shipped checkpoints, one per kind, in the dashboard's order
VIEWPORT = {"width": 1500, "height": 1000}
MINIMUM_MAP_PIXELS = 48
TIMEOUT_MS = 120_000
SAMPLE = f"sample: {DEFAULT_SAMPLE}"
# the model each view opens on (dashboard/views/*.py say why); Gate statistics' and Weighting off's are
# computed below from the shipped files
OPENS_ON = {"explorer": "cbam", "attribution": "spatial", "batch": "cbam"}

# plotly keeps decoded arrays as typed arrays, the canvas figures flat arrays and a shape: plain
# nested lists for Python
PLAIN = """const plain = a => a == null ? null
  : Array.from(a, v => (v != null && typeof v === 'object') ? Array.from(v) : v);
const rows = d => d == null ? null : d.shape.length < 2 ? Array.from(d.values)
  : Array.from({length: d.shape[0]}, (_, i) => Array.from(d.values.slice(i * d.shape[1], (i + 1) * d.shape[1])));"""
# Every heatmap in the Compare figures (the canvas figures tagged with an image and titled
# "<model><br><site>"): its model, trace name and map shape; and the width in CSS pixels each heatmap
# is drawn at.
COMPARE_MAPS = """() => { const figures = [...document.querySelectorAll('.fmw-figure')]
  .filter(f => f.dataset.image && (f.dataset.title || '').includes('<br>'));
  const model = f => f.dataset.title.split('<br>')[0];
  const maps = figures.flatMap(f => f._drawn.filter(d => d.type === 'heatmap').map(d => ({...d, model: model(f)})));
  return {maps: maps.map(d => ({model: d.model, name: d.name, rows: d.rows, columns: d.columns})),
          widths: maps.map(d => d.width)}; }"""
# The traces of the chart (plotly, or a canvas figure) whose title starts with ``title`` (Streamlit's
# theme puts titles in <b>).
TRACES_OF = f"""(title) => {{ {PLAIN}
  const p = [...document.querySelectorAll('.js-plotly-plot')]
    .find(p => p.layout.title && (p.layout.title.text || '').replace(/<\\/?b>/g, '').startsWith(title));
  if (p) return p._fullData.map(t => ({{name: t.name, type: t.type, x: plain(t.x), y: plain(t.y), z: plain(t.z)}}));
  const f = [...document.querySelectorAll('.fmw-figure')].find(f => (f.dataset.title || '').startsWith(title));
  return f && f._figure ? f._figure.data.map(t => ({{name: t.name, type: t.type, x: rows(t._x), y: rows(t._y),
    z: rows(t._z)}})) : null; }}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """One server for the module, the shipped checkpoints in the folder."""
    with dashboard_server(CHECKPOINTS, tmp_path_factory.mktemp("dashboard") / "streamlit.log") as server:
        yield server


def open_page(browser, url: str):
    """A fresh browser context (nothing cached) at 1500x1000 on ``url``."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    return page


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count() == 0


def selected(page, label: str) -> str:
    """The value a select box labelled ``label`` shows (Streamlit draws it as a combo box)."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def test_compare_draws_every_map_large_and_shows_what_changed(browser, dashboard):
    page = open_page(browser, dashboard.url)
    try:
        wait_for_charts(page, SAMPLE, len(KINDS), TIMEOUT_MS, dashboard.log)
        no_errors(page)
        drawn = page.evaluate(COMPARE_MAPS)
        maps, widths = drawn["maps"], drawn["widths"]
        assert {entry["model"] for entry in maps} == set(KINDS)
        assert len(widths) == len(maps), "every heatmap is drawn"
        assert min(widths) >= MINIMUM_MAP_PIXELS, sorted(widths)[:5]
        feature_maps = [entry for entry in maps if entry["name"].startswith(("mean ", "channel "))]
        assert all((entry["rows"], entry["columns"]) == (15, 15) for entry in feature_maps), "one 15x15 map per heatmap"
        gates = {(entry["model"], entry["name"]): (entry["rows"], entry["columns"]) for entry in maps}
        assert gates[("coord", "gate: channel × column")] == (64, 15), "C x W, as the layout varies"
        assert gates[("coord", "gate: channel × row")] == (64, 15)
        assert gates[("coord", "gates over the image")] == gates[("simam", "gates over the image")] == (15, 15)
        rows, columns = gates[("simam", "gate maps, one per channel")]
        assert rows * columns >= 64 * 15 * 15, "every channel's gate map in one montage"
        for kind in KINDS:
            names = [entry["name"] for entry in maps if entry["model"] == kind]
            assert names[:2] == ["mean before", "mean after"]
            assert sum(name.startswith("channel ") for name in names) == 8, "four changed channels, before and after"
            assert ("spatial gate" in names) == (kind in ("spatial", "cbam"))
            traces = page.evaluate(TRACES_OF, kind)
            channel_gated = kind in ("scale", "channel", "cbam", "eca")
            assert any(trace["name"] == "channel gate" for trace in traces) == channel_gated
        print(f"\nsmallest map drawn in Compare: {min(widths):.0f} CSS px")
        assert page.get_by_role("button", name="Downloads").count() == 1, "downloads sit in one menu"
        assert page.locator('[data-testid="stDownloadButton"]').count() == 0, "no download button outside it"

        page.get_by_role("button", name="All 64 maps").nth(KINDS.index("cbam")).click()
        page.get_by_role("heading", name="Layer explorer").wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function(TRACES_OF, arg="cbam: stages.0.weighting", timeout=TIMEOUT_MS)
        assert selected(page, "Checkpoint") == "cbam" and selected(page, "Weighting site").startswith("stages.0")
        grids = page.evaluate(TRACES_OF, "cbam: stages.0.weighting")
        assert [trace["name"] for trace in grids] == ["before", "after", "difference"], "the full grids, one click away"
    finally:
        page.context.close()


def test_every_view_opens_on_a_weighted_model_and_a_photo_the_models_get_right(browser, dashboard):
    page = open_page(browser, dashboard.url)
    try:
        wait_for_charts(page, SAMPLE, len(KINDS), TIMEOUT_MS, dashboard.log)
        assert selected(page, "Image") == SAMPLE
        tables = page.locator('[data-testid="stMain"] [data-testid="stMarkdownContainer"] table')
        top = [table.locator("tbody tr").first.locator("td").first.inner_text() for table in tables.all()]
        assert top == [SAMPLE_CLASSES[DEFAULT_SAMPLE]] * len(KINDS), "every shipped model classifies the sample right"
    finally:
        page.context.close()
    drops = {kind: header_weighting_off_drop(str(CHECKPOINTS / f"{kind}.safetensors"), 0.0) for kind in KINDS}
    largest_drop = max((kind for kind in KINDS if drops[kind] is not None), key=lambda kind: drops[kind] or 0.0)
    steepest = steepest_channel_rise(CHECKPOINTS, KINDS)  # eca with today's files
    for view, kind in {**OPENS_ON, "statistics": steepest, "weighting_off": largest_drop}.items():
        page = open_page(browser, f"{dashboard.url}/{view}")
        try:
            page.wait_for_function(FIRST_CHART, timeout=TIMEOUT_MS)
            no_errors(page)
            assert selected(page, "Checkpoint") == kind, view
            assert header_weighting(str(CHECKPOINTS / f"{kind}.safetensors"), 0.0) != "none"
        finally:
            page.context.close()


def shipped_series() -> dict[str, tuple[list[float], list[float]]]:
    series = {}
    for kind in KINDS:
        statistics = shipped_statistics(CHECKPOINTS / f"{kind}.safetensors").statistics
        assert statistics is not None, f"{kind}: no shipped statistics"
        for line in specificity_series(statistics, kind):
            series[line.label] = (line.depths.tolist(), line.values.tolist())
    return series


def test_gate_statistics_open_on_the_shipped_findings(browser, dashboard):
    page = open_page(browser, f"{dashboard.url}/statistics")
    try:
        page.wait_for_function(FIRST_CHART, timeout=TIMEOUT_MS)
        page.wait_for_function(TRACES_OF, arg="stages.2.weighting: channel gate", timeout=TIMEOUT_MS)
        no_errors(page)
        lines = page.evaluate(TRACES_OF, "class specificity by depth, shipped checkpoints")
        expected = shipped_series()
        assert [line["name"] for line in lines] == list(expected), "every kind and gate stage side by side"
        for line in lines:
            depths, values = expected[line["name"]]
            np.testing.assert_allclose(line["x"], depths)
            np.testing.assert_allclose(line["y"], values, rtol=1e-6)
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "Hu et al. (2018)" in text and "increasingly class-specific" in text, "what the SE paper found"
        assert "rises from the first site to the last for" in text, "and what ours show"
        eca = GateStatistics.from_json(json.loads((CHECKPOINTS / "stats" / "eca.json").read_text()))
        for site in eca.sites:
            heatmap = page.evaluate(TRACES_OF, f"{site.name}: channel gate")
            np.testing.assert_allclose(np.array(heatmap[0]["z"], dtype=float), site.stages["channel"].class_mean)
    finally:
        page.context.close()


def test_views_say_what_they_show_and_hover_names_channel_position_and_value(browser, dashboard):
    page = open_page(browser, f"{dashboard.url}/explorer")
    try:
        wait_for_charts(page, SAMPLE, 1, TIMEOUT_MS, dashboard.log)
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "Every channel of one weighting layer" in text
        assert "x' = x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))" in text, "the selected kind's formula"
        assert page.locator('a[href="https://arxiv.org/abs/1807.06521"]').count() == 1, "and its paper"
    finally:
        page.context.close()
    page = open_page(browser, dashboard.url)
    try:
        wait_for_charts(page, SAMPLE, len(KINDS), TIMEOUT_MS, dashboard.log)
        assert "Before is what the block computed" in page.locator('[data-testid="stMain"]').inner_text()
        figure = page.locator(".fmw-figure").nth(KINDS.index("channel"))
        tile = figure.evaluate("f => f._drawn.filter(d => d.type === 'heatmap')[2]")  # 1st changed channel, before
        box = figure.locator("canvas").bounding_box()
        page.mouse.move(box["x"] + tile["left"] + tile["width"] / 2, box["y"] + tile["top"] + tile["height"] / 2)
        label = figure.locator(".fmw-figure-hover")
        label.wait_for(state="visible", timeout=10_000)
        hover = label.text_content() or ""
        assert "channel " in hover and ", before" in hover and "row 7, column 7" in hover and "value" in hover, hover
    finally:
        page.context.close()


def test_an_upload_becomes_the_current_image_in_every_view(browser, dashboard, tmp_path):
    import skimage.data
    from PIL import Image

    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(photo)
    page = open_page(browser, dashboard.url)
    try:
        wait_for_charts(page, SAMPLE, len(KINDS), TIMEOUT_MS, dashboard.log)
        image_upload_input(page).set_input_files(str(photo))
        wait_for_charts(page, photo.name, len(KINDS), TIMEOUT_MS, dashboard.log)
        for view, heading in (
            ("Layer explorer", "Layer explorer"),
            ("Attribution", "Attribution"),
            ("Weighting off", "Switch weighting off"),
        ):
            page.locator('[data-testid="stSidebarNav"]').get_by_text(view, exact=True).click()
            page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=TIMEOUT_MS)
            wait_for_charts(page, photo.name, 1, TIMEOUT_MS, dashboard.log)
            assert selected(page, "Image") == photo.name, view
        no_errors(page)
    finally:
        page.context.close()


@pytest.mark.parametrize("how", list(SERVERS))
def test_the_dashboard_listens_on_localhost_only_by_default(how, tmp_path):
    """Started with no --server.address, as the README says: `streamlit run dashboard/app.py` (bound by
    .streamlit/config.toml) and `fmw dashboard` (which adds --server.address 127.0.0.1)."""
    with dashboard_server(CHECKPOINTS, tmp_path / "streamlit.log", how=how, address=None) as server:
        assert listening_addresses(server.port) == {"127.0.0.1"}


def test_listening_addresses_tells_all_interfaces_from_loopback(tmp_path):
    """The check above would catch a server open to the network: served on 0.0.0.0, it reads so."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with dashboard_server(empty, tmp_path / "streamlit.log", address="0.0.0.0") as server:
        assert listening_addresses(server.port) == {"0.0.0.0"}
