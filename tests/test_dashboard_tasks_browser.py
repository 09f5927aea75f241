"""Browser test: `fmw dashboard` with a detector (the user's factory: torchvision's Faster R-CNN
MobileNetV3 320, no weights, keeping its best boxes whatever their score) and a segmenter
(`torchvision:lraspp_mobilenet_v3_large --random-weights`) beside an fmw checkpoint; a photo uploaded
in the sidebar, then the detector's boxes and the segmenter's mask read from Compare's charts."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from tests.browser_support import (
    CHARTS_SHOW,
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    dashboard_server,
    image_upload_input,
)
from tests.conftest import make_checkpoint

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_SKIP_REASON)]

BOXES = 3
DETECTOR = f"""
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn


def build():
    torch.manual_seed(0)
    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img={BOXES}
    )
"""
# Each chart's name, boxes (the outlines drawn) and the mask's size, as the browser holds them.
READ_CHARTS = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(p => !p.closest('[data-stale="true"]')).map(p => ({
  title: p.layout.title ? p.layout.title.text : '', image: p.layout.meta ? p.layout.meta.image : null,
  boxes: p.data.filter(t => t.type === 'scatter' && t.mode === 'lines').map(t => [...t.x]),
  mask: p.data.filter(t => t.type === 'heatmap' && t.name === 'mask').map(
    t => t.z.shape ? String(t.z.shape).split(',').map(Number) : [t.z.length, t.z[0].length]),
  legend: p.data.filter(t => t.showlegend).map(t => t.name)}))"""


def test_upload_a_photo_and_read_boxes_and_mask_in_compare(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    checkpoints = tmp_path / "checkpoints"
    make_checkpoint(checkpoints / "channel.safetensors", "channel", seed=3)
    (tmp_path / "detector.py").write_text(DETECTOR)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).resize((320, 320)).save(photo)
    arguments = [
        "--model",
        f"{tmp_path / 'detector.py'}:build",
        "--model",
        "torchvision:lraspp_mobilenet_v3_large",
        "--random-weights",
        "--input-size",
        "160",
    ]
    with (
        dashboard_server(checkpoints, tmp_path / "streamlit.log", how="fmw dashboard", arguments=arguments) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2400})
            page.goto(server.url, wait_until="domcontentloaded")
            page.wait_for_function(CHARTS_SHOW, arg=["sample: chelsea", 3], timeout=180_000)
            image_upload_input(page).set_input_files(str(photo))
            page.wait_for_function(CHARTS_SHOW, arg=[photo.name, 5], timeout=180_000, polling=100)
            slider = page.get_by_role("slider", name="Box score threshold")
            slider.focus()
            page.keyboard.press("Home")  # threshold 0: every box the detector kept
            page.wait_for_function(
                "() => [...document.querySelectorAll('.js-plotly-plot')].some("
                "p => p.data.filter(t => t.type === 'scatter' && t.mode === 'lines').length > 0)",
                timeout=120_000,
            )
            page.wait_for_function(CHARTS_SHOW, arg=[photo.name, 5], timeout=120_000, polling=100)
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            charts = page.evaluate(READ_CHARTS)
            boxes = next(chart for chart in charts if chart["title"].endswith("boxes ≥ 0%"))
            assert len(boxes["boxes"]) == BOXES
            assert all(0 <= x <= 320 for outline in boxes["boxes"] for x in outline), "on the 320-px photo"
            mask = next(chart for chart in charts if chart["mask"])
            assert mask["mask"] == [[160, 160]]
            shares = [float(name.rsplit(" ", 1)[1].rstrip("%")) for name in mask["legend"]]
            assert sum(shares) == pytest.approx(100.0, abs=0.1 * len(shares))
        finally:
            browser.close()
