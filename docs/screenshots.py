"""Screenshots of every dashboard view as a newcomer first sees it, for docs/dashboard.md: headless
Chromium at 1500x1000 against `streamlit run dashboard/app.py` with the eight shipped checkpoints and
the default sample photo (scikit-image's, never a CIFAR image); each PNG is the first screen of its
view, colour-quantised to stay small. ``compare-full.png`` is the whole Compare view, taller;
``compare-layouts.png`` its coordinate-attention and SimAM columns; ``explorer-coord.png`` and
``explorer-simam.png`` the Layer explorer on those two; ``compare-tasks.png`` Compare with a detector
and a segmenter (random weights: nothing is downloaded, so their boxes and mask show the views, not
real detections) beside a shipped checkpoint, on scikit-image's astronaut photo.

Run from the repository root: python -m docs.screenshots   (needs /usr/bin/chromium and playwright)
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from tests.browser_support import (
    CHARTS,
    CHARTS_SHOW,
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    REPO,
    dashboard_server,
    image_upload_input,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

OUT = REPO / "docs" / "screenshots"
VIEWS = {  # URL path -> file name
    "": "compare",
    "explorer": "explorer",
    "attribution": "attribution",
    "weighting_off": "weighting-off",
    "batch": "batch",
    "statistics": "statistics",
    "models": "models",
}
FULL_COMPARE_HEIGHT = 1750
LAYOUTS_COMPARE_HEIGHT = 3000
LAYOUTS_CROP = (300, 1700, 1000, 2950)  # the second row of Compare's columns: coord and simam
TASKS_HEIGHT = 2400
TASKS_CROP = (300, 400, 1500, 2400)  # the three columns, down to their predictions
# A detector that keeps its three best boxes whatever their score (random weights score about 1/91)
DETECTOR = """
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn


def build():
    torch.manual_seed(0)
    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=3
    )
"""
SETTLED = f"""() => {{ const charts = {CHARTS};
  return !document.querySelector('[data-testid="stStatusWidget"]') && charts.length > 0
    && charts.every(c => c.drawn); }}"""


def save_small(png: bytes, path: Path) -> int:
    """``png`` quantised to 256 colours (the pages are flat colours, heatmaps and two photos)."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path.stat().st_size


def shoot(
    browser: Browser,
    url: str,
    path: Path,
    height: int = 1000,
    *,
    checkpoint: str | None = None,
    crop: tuple[int, int, int, int] | None = None,
    upload: Path | None = None,
) -> int:
    """The first screen of ``url`` (``height`` tall), after choosing ``checkpoint`` in the view's
    Checkpoint box or uploading ``upload`` in the sidebar; ``crop`` (left, top, right, bottom) of it."""
    context = browser.new_context(viewport={"width": 1500, "height": height})
    try:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(SETTLED, timeout=180_000)
        if checkpoint is not None:
            page.get_by_role("combobox", name="Checkpoint", exact=True).click()
            page.get_by_role("option", name=checkpoint, exact=True).click()
            page.wait_for_timeout(1000)
            page.wait_for_function(SETTLED, timeout=180_000)
        if upload is not None:  # then every box the detector kept: the threshold slider at 0
            image_upload_input(page).set_input_files(str(upload))
            page.wait_for_function(CHARTS_SHOW, arg=[upload.name, 3], timeout=180_000)
            page.get_by_role("slider", name="Box score threshold").focus()
            page.keyboard.press("Home")
            page.wait_for_timeout(3000)
            page.wait_for_function(SETTLED, timeout=180_000)
        page.wait_for_timeout(2500)  # fonts and the photos under the gates
        png = page.screenshot()
        if crop is not None:
            buffer = io.BytesIO()
            Image.open(io.BytesIO(png)).crop(crop).save(buffer, "PNG")
            png = buffer.getvalue()
        return save_small(png, path)
    finally:
        context.close()


def main() -> int:
    if not CHROMIUM.exists():
        print(f"not run: {CHROMIUM_SKIP_REASON}")
        return 1
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        log = Path(folder) / "streamlit.log"
        with dashboard_server(REPO / "checkpoints", log) as server:
            browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
            try:
                for view, name in VIEWS.items():
                    size = shoot(browser, f"{server.url}/{view}", OUT / f"{name}.png")
                    print(f"{name}.png: {size / 1024:.0f} KB")
                size = shoot(browser, server.url, OUT / "compare-full.png", FULL_COMPARE_HEIGHT)
                print(f"compare-full.png: {size / 1024:.0f} KB")
                layouts = shoot(
                    browser, server.url, OUT / "compare-layouts.png", LAYOUTS_COMPARE_HEIGHT, crop=LAYOUTS_CROP
                )
                print(f"compare-layouts.png: {layouts / 1024:.0f} KB")
                for kind in ("coord", "simam"):
                    size = shoot(browser, f"{server.url}/explorer", OUT / f"explorer-{kind}.png", 1300, checkpoint=kind)
                    print(f"explorer-{kind}.png: {size / 1024:.0f} KB")
            finally:
                browser.close()
        shoot_tasks(playwright, Path(folder))
    return 0


def shoot_tasks(playwright: Playwright, folder: Path) -> None:
    """Compare with a detector (``DETECTOR``) and LR-ASPP (random weights) beside the shipped cbam."""
    import skimage.data

    checkpoints = folder / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "cbam.safetensors").symlink_to(REPO / "checkpoints" / "cbam.safetensors")
    (folder / "detector.py").write_text(DETECTOR)
    photo = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    arguments = [
        *("--model", f"{folder / 'detector.py'}:build"),
        *("--model", "torchvision:lraspp_mobilenet_v3_large", "--random-weights"),
    ]
    with dashboard_server(checkpoints, folder / "tasks.log", how="fmw dashboard", arguments=arguments) as server:
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            size = shoot(browser, server.url, OUT / "compare-tasks.png", TASKS_HEIGHT, upload=photo, crop=TASKS_CROP)
            print(f"compare-tasks.png: {size / 1024:.0f} KB")
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
