"""Screenshots of every dashboard view as a newcomer first sees it, for docs/dashboard.md: headless
Chromium at 1500x1000 against `streamlit run dashboard/app.py` with the six shipped checkpoints and
the default sample photo (scikit-image's, never a CIFAR image); each PNG is the first screen of its
view, colour-quantised to stay small. ``compare-full.png`` is the whole Compare view, taller.

Run from the repository root: python -m docs.screenshots   (needs /usr/bin/chromium and playwright)
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from tests.browser_support import CHROMIUM, CHROMIUM_OPTIONS, CHROMIUM_SKIP_REASON, REPO, dashboard_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

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
SETTLED = """() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return !document.querySelector('[data-testid="stStatusWidget"]') && plots.length > 0
    && plots.every(p => p._fullLayout && p.querySelector('.main-svg')); }"""


def save_small(png: bytes, path: Path) -> int:
    """``png`` quantised to 256 colours (the pages are flat colours, heatmaps and two photos)."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path.stat().st_size


def shoot(browser: Browser, url: str, path: Path, height: int = 1000) -> int:
    context = browser.new_context(viewport={"width": 1500, "height": height})
    try:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(SETTLED, timeout=120_000)
        page.wait_for_timeout(1500)  # fonts and the photos under the gates
        return save_small(page.screenshot(), path)
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
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
