"""The canvas component's drawing (dashboard/figure_canvas.js) against plotly.js itself, in Chromium,
without Streamlit: the same Compare figures (every gate layout among the shipped kinds, a photo under
the gates) drawn by both at one width must put every heatmap and image in the same place at the same
size and paint the same colours; hover must fill in each trace's own template; a figure sent again
unchanged is not redrawn, a changed one is redrawn on the same canvas."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import plotly
import pytest
import skimage.data
from PIL import Image

from dashboard.figure_canvas import SCRIPT, canvas_payload
from fmw.analysis import analyse_image, channel_order, site_change
from fmw.figures import explorer_grids_figure, spatial_overlay_figure, stage_figure
from fmw.figures.compare import site_change_spec
from fmw.io import load_checkpoint
from tests.browser_support import CHROMIUM, CHROMIUM_OPTIONS, CHROMIUM_SKIP_REASON

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_SKIP_REASON)

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
WIDTH = 230  # about a Compare column on a 1500-px-wide window
KINDS = ("cbam", "coord", "simam", "eca", "spatial")  # bars, photo + gate, coordinate heatmaps, a gate montage
EXPLORED = ("cbam", "coord")  # Layer explorer figures: grids, channel gate, coordinate gates, overlays

# Loads figure_canvas.js as the module Streamlit would import, keeps its default export on window.
LOAD_MODULE = """async code => {
  const url = URL.createObjectURL(new Blob([code], {type: 'text/javascript'}));
  window.drawFigure = (await import(url)).default; }"""
# Draws one payload both ways, side by side: plotly.js into #plotly-N, the canvas into #canvas-N; then
# every heatmap/image plotly drew (its trace name and box relative to its chart) and the canvas' own
# record of what it drew where.
DRAW_BOTH = """async ([payload, index, width]) => {
  const make = id => { const div = document.createElement('div'); div.id = id;
    div.style.cssText = `width:${width}px;display:inline-block;vertical-align:top;margin-right:20px`;
    document.body.appendChild(div); return div; };
  const plotted = make(`plotly-${index}`), canvas = make(`canvas-${index}`);
  window.drawFigure({data: payload, parentElement: canvas});
  const root = canvas.querySelector('.fmw-figure');
  const start = performance.now();
  while (root.dataset.drawn !== payload.version && performance.now() - start < 10000)
    await new Promise(resolve => setTimeout(resolve, 20));
  // plotly drawn within the margins the canvas used (it keeps the figure's own, grown only for what
  // it draws outside the axes), where plotly would widen them to fit tick labels and colour bars
  const figure = JSON.parse(JSON.stringify(payload.figure)), plot = root._placed.plot;
  Object.keys(figure.layout).filter(k => /^[xy]axis/.test(k)).forEach(k => { figure.layout[k].automargin = false; });
  figure.layout.margin = {...figure.layout.margin, l: plot.x, t: plot.y, r: width - plot.x - plot.w,
    b: figure.layout.height - plot.y - plot.h, autoexpand: false};
  await Plotly.newPlot(plotted, figure.data, figure.layout, {displayModeBar: false, staticPlot: false});
  const origin = plotted.getBoundingClientRect();
  const boxes = [...plotted.querySelectorAll('g.hm image, g.imagelayer image, .layer-above image, image')]
    .map(image => { const data = image.parentNode.__data__ || image.__data__;
      const trace = data && data[0] && data[0].trace;
      const box = image.getBoundingClientRect();
      return {name: trace ? trace.name : null, left: box.left - origin.left, top: box.top - origin.top,
              width: box.width, height: box.height}; })
    .filter(box => box.name !== null);
  return {plotly: boxes, canvas: root._drawn, drawn: root.dataset.drawn};
}"""


@pytest.fixture(scope="module")
def payloads() -> dict[str, dict]:
    """Each kind's first-site Compare figure on a photo, as the view sends it."""
    made = {}
    for kind in KINDS:
        analysis = analyse_image(load_checkpoint(kind).handle(), skimage.data.chelsea())
        site = analysis.sites[0]
        spec = site_change_spec(site_change(site), analysis.crop, title=f"{kind}<br>{site.name}")
        made[kind] = canvas_payload(spec)
    return made


def _explorer_payloads() -> dict[str, dict]:
    """The Layer explorer's figures of the first site of each of ``EXPLORED``: the grids (three
    subplots, two vertical colour bars, per-channel hover data), each stage alone and the gates over
    the photo."""
    made = {}
    for kind in EXPLORED:
        analysis = analyse_image(load_checkpoint(kind).handle(), skimage.data.chelsea())
        site = analysis.sites[0]
        made[f"{kind} grids"] = explorer_grids_figure(site.before, site.after, order=channel_order(site, "gate"))
        for stage in site.stages:
            made[f"{kind} {stage.name}"] = stage_figure(stage)
        assert site.gates_over_image is not None
        made[f"{kind} overlay"] = spatial_overlay_figure(analysis.crop, site.gates_over_image)
    return {name: canvas_payload(figure) for name, figure in made.items()}


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        context = browser.new_context(viewport={"width": 1600, "height": 1200}, device_scale_factor=1)
        opened = context.new_page()
        opened.set_content("<html><body style='margin:0;font-family:sans-serif'></body></html>")
        opened.add_script_tag(content=PLOTLY_JS.read_text(encoding="utf-8"))
        opened.evaluate(LOAD_MODULE, SCRIPT.read_text(encoding="utf-8"))
        yield opened
        browser.close()


@pytest.fixture(scope="module")
def drawn(page, payloads) -> dict[str, dict]:
    return {kind: page.evaluate(DRAW_BOTH, [payloads[kind], index, WIDTH]) for index, kind in enumerate(KINDS)}


def test_every_map_and_photo_is_where_plotly_puts_it(drawn, payloads) -> None:
    for kind, both in drawn.items():
        assert both["drawn"] == payloads[kind]["version"]
        plotted = {box["name"]: box for box in both["plotly"]}
        pictures = [entry for entry in both["canvas"] if entry["type"] in ("heatmap", "image")]
        heatmaps = [t["name"] for t in payloads[kind]["figure"]["data"] if t["type"] == "heatmap"]
        assert [entry["name"] for entry in pictures if entry["type"] == "heatmap"] == heatmaps, "every heatmap drawn"
        assert set(plotted) == {entry["name"] for entry in pictures}, kind
        for entry in pictures:
            reference = plotted[entry["name"]]
            for side in ("left", "top", "width", "height"):
                assert entry[side] == pytest.approx(reference[side], abs=1.5), (kind, entry["name"], side)


def _element_pixels(page, selector: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"), dtype=np.int16)


def test_the_colours_are_plotlys(page, drawn) -> None:
    """At the centre of every cell of every feature map (and of the gate montage), the canvas paints
    the colour plotly paints, within the rounding of a 256-colour table."""
    for index, (kind, both) in enumerate(drawn.items()):
        plotted = _element_pixels(page, f"#plotly-{index} .svg-container")
        painted = _element_pixels(page, f"#canvas-{index} canvas")
        compared = 0
        for entry in both["canvas"]:
            if entry["type"] != "heatmap" or entry["name"].startswith(("gates over", "spatial gate")):
                continue  # drawn over the photo at partial opacity: checked by position above
            for row in range(entry["rows"]):
                for column in range(entry["columns"]):
                    cell_width, cell_height = entry["width"] / entry["columns"], entry["height"] / entry["rows"]
                    if cell_width < 3 or cell_height < 3:
                        continue  # too small to have a centre pixel of its own
                    x = int(entry["left"] + (column + 0.5) * cell_width)
                    y = int(entry["top"] + (row + 0.5) * cell_height)
                    difference = np.abs(plotted[y, x] - painted[y, x]).max()
                    assert difference <= 6, (kind, entry["name"], row, column, plotted[y, x], painted[y, x])
                    compared += 1
        assert compared > 100, (kind, compared)


def test_hover_fills_in_each_traces_template(page, drawn, payloads) -> None:
    """Over a map: what it is, the row and column and the value (plotly's ``.4g``); over a bar: the
    channel and its gate; over the photo: the gate cell under the pointer."""
    for kind in ("cbam", "coord"):
        canvas = page.locator(f"#canvas-{KINDS.index(kind)} canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        data = {t["name"]: t for t in payloads[kind]["figure"]["data"]}
        change = site_change(analyse_image(load_checkpoint(kind).handle(), skimage.data.chelsea()).sites[0])
        channel = change.channels[0]
        entry = next(e for e in drawn[kind]["canvas"] if e["name"] == f"channel {channel.channel} after")
        row, column = 3, 5
        x = box["x"] + entry["left"] + (column + 0.5) * entry["width"] / entry["columns"]
        y = box["y"] + entry["top"] + (row + 0.5) * entry["height"] / entry["rows"]
        page.mouse.move(x, y)
        tip = page.locator(f"#canvas-{KINDS.index(kind)} .fmw-figure-hover")
        value = float(change.after[0][row, column])
        assert tip.text_content() == f"channel {channel.channel}, after\nrow {row}, column {column}\nvalue {value:#.4g}"
        assert "channel" in data[f"channel {channel.channel} after"]["hovertemplate"]
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 2)  # the margin above the title: no trace
        assert not tip.is_visible(), "the label goes when the pointer leaves"
    bars = next(e for e in drawn["cbam"]["canvas"] if e["name"] == "channel gate")
    gate = analyse_image(load_checkpoint("cbam").handle(), skimage.data.chelsea()).sites[0].channel_gate
    assert gate is not None
    largest = int(np.argsort(-gate, kind="stable")[0])
    canvas = page.locator(f"#canvas-{KINDS.index('cbam')} canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(
        box["x"] + bars["left"] + 0.5 * bars["width"] / bars["bars"], box["y"] + bars["top"] + bars["height"] - 2
    )
    tip = page.locator(f"#canvas-{KINDS.index('cbam')} .fmw-figure-hover")
    assert tip.text_content() == f"channel {largest}\ngate {float(gate[largest]):#.4g}", "the largest gate's bar"
    cbam = next(e for e in drawn["cbam"]["canvas"] if e["name"] == "spatial gate")
    canvas = page.locator(f"#canvas-{KINDS.index('cbam')} canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + cbam["left"] + 1, box["y"] + cbam["top"] + 1)
    tip = page.locator(f"#canvas-{KINDS.index('cbam')} .fmw-figure-hover")
    assert tip.text_content().startswith("spatial gate\nrow 0, column 0\ngate "), tip.text_content()


def test_a_figure_sent_again_is_not_redrawn_and_a_new_one_is_drawn_in_place(page, payloads) -> None:
    index = len(KINDS)
    page.evaluate(DRAW_BOTH, [payloads["eca"], index, WIDTH])
    marked = page.evaluate(
        """([payload, index]) => { const parent = document.getElementById(`canvas-${index}`);
        const canvas = parent.querySelector('canvas'); canvas.dataset.mark = 'kept';
        window.drawFigure({data: payload, parentElement: parent});
        return {same: parent.querySelector('canvas') === canvas, count: parent.querySelectorAll('canvas').length}; }""",
        [payloads["eca"], index],
    )
    assert marked == {"same": True, "count": 1}
    redrawn = page.evaluate(
        """async ([payload, index]) => { const parent = document.getElementById(`canvas-${index}`);
        window.drawFigure({data: payload, parentElement: parent});
        const root = parent.querySelector('.fmw-figure');
        const start = performance.now();
        while (root.dataset.drawn !== payload.version && performance.now() - start < 10000)
          await new Promise(resolve => setTimeout(resolve, 20));
        const canvases = parent.querySelectorAll('canvas');
        return {drawn: root.dataset.drawn, title: root.dataset.title, mark: canvases[0].dataset.mark,
                count: canvases.length}; }""",
        [payloads["cbam"], index],
    )
    assert redrawn == {
        "drawn": payloads["cbam"]["version"],
        "title": payloads["cbam"]["figure"]["layout"]["title"]["text"],
        "mark": "kept",
        "count": 1,
    }


def test_the_explorers_figures_are_where_plotly_puts_them_and_zoom(page) -> None:
    """The Layer explorer's figures (made with plotly's own subplots): heatmaps and photos where plotly
    puts them; the colour bars drawn beside them; a box dragged on a grid zooms into it (the maps drawn
    larger, hover still naming the cell under the pointer) and a double click zooms out."""
    payloads = _explorer_payloads()
    first = len(KINDS) + 1
    for offset, (name, payload) in enumerate(payloads.items()):
        both = page.evaluate(DRAW_BOTH, [payload, first + offset, 700 if "grids" in name else WIDTH])
        plotted = {box["name"]: box for box in both["plotly"]}
        pictures = [entry for entry in both["canvas"] if entry["type"] in ("heatmap", "image")]
        assert pictures or name.endswith("channel"), name
        for entry in pictures:
            reference = plotted[entry["name"]]
            for side in ("left", "top", "width", "height"):
                assert entry[side] == pytest.approx(reference[side], abs=1.5), (name, entry["name"], side)
    grids = first + list(payloads).index("cbam grids")
    root = page.locator(f"#canvas-{grids} .fmw-figure")
    root.scroll_into_view_if_needed()
    before = root.evaluate("r => r._drawn.find(d => d.name === 'before')")
    box = root.locator("canvas").bounding_box()
    left, top = box["x"] + before["left"], box["y"] + before["top"]
    page.mouse.move(left + 4, top + 4)
    page.mouse.down()
    page.mouse.move(left + before["width"] / 4, top + before["height"] / 4, steps=4)
    page.mouse.up()
    zoomed = root.evaluate("r => r._drawn.find(d => d.name === 'before')")
    assert zoomed["width"] > 3 * before["width"], "a quarter of the grid fills the axes"
    page.mouse.move(left + 6, top + 6)
    tip = root.locator(".fmw-figure-hover")
    assert tip.text_content().startswith("channel ") and tip.text_content().endswith("\nbefore"), tip.text_content()
    page.mouse.dblclick(left + 6, top + 6)
    assert root.evaluate("r => r._drawn.find(d => d.name === 'before').width") == pytest.approx(before["width"])


def test_a_heatmap_of_millions_of_values_without_a_colour_range_is_drawn(page) -> None:
    """The colour range then comes from the values themselves (as plotly's autorange), found without
    spreading them into one call."""
    values = np.random.default_rng(0).normal(size=(1200, 1000)).astype(np.float32)
    values[0, 0] = np.nan
    payload = canvas_payload({"data": [{"type": "heatmap", "z": values, "name": "big"}], "layout": {"height": 300}})
    both = page.evaluate(DRAW_BOTH, [payload, 99, WIDTH])
    assert both["drawn"] == payload["version"]
    assert [(entry["name"], entry["rows"], entry["columns"]) for entry in both["canvas"]] == [("big", 1200, 1000)]
