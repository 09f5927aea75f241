"""Browser test: Debian's chromium, driven by Playwright, against a real `streamlit run` of the
dashboard with six random-weight checkpoints; uploads a 12-megapixel JPEG and times it to charts."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
KINDS = ("none", "scale", "spatial", "channel", "cbam", "eca")
UPLOAD_TO_CHARTS_BUDGET_S = 3.0
ARTIFACTS = REPO / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def phone_photo(path: Path) -> Path:
    """A 4000x3000 (12 MP) JPEG made by upscaling scikit-image's coffee photo."""
    import skimage.data

    Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


@pytest.fixture
def dashboard_url(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for seed, kind in enumerate(KINDS, start=11):
        make_checkpoint(checkpoints / f"{kind}.safetensors", kind, seed=seed)
    port = free_port()
    environment = {**os.environ, "FMW_CHECKPOINT_DIR": str(checkpoints)}
    log = open(tmp_path / "streamlit.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


CHARTS_SHOW = """([name, minimum]) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return !running && plots.length >= minimum && plots.every(
    p => p._fullLayout && p.querySelector('.main-svg') && p.layout && p.layout.meta && p.layout.meta.image === name);
}"""


def test_upload_a_phone_photo_and_see_every_chart(dashboard_url, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = phone_photo(tmp_path / "phone-photo.jpg")
    expected_charts = len(KINDS)  # the Compare page draws one chart per checkpoint column
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 2000})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            page.wait_for_function(CHARTS_SHOW, arg=["sample: chelsea", expected_charts], timeout=120_000)

            start = time.perf_counter()
            page.locator('[data-testid="stFileUploader"] input[type=file]').set_input_files(str(photo))
            page.wait_for_function(CHARTS_SHOW, arg=[photo.name, expected_charts], timeout=60_000, polling=50)
            upload_to_charts = time.perf_counter() - start

            print(f"\nupload-to-charts with {len(KINDS)} checkpoints, 12 MP JPEG: {upload_to_charts:.2f} s")
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            assert page.locator(".js-plotly-plot").count() == expected_charts
            for kind in KINDS:
                assert page.get_by_text(kind, exact=True).first.is_visible()
            tables = page.locator('[data-testid="stMarkdownContainer"] table')
            assert tables.count() == len(KINDS)
            assert tables.first.locator("tbody tr").count() == 5
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)
        finally:
            browser.close()
    assert upload_to_charts <= UPLOAD_TO_CHARTS_BUDGET_S, (
        f"upload to every chart drawn took {upload_to_charts:.2f} s; the budget is {UPLOAD_TO_CHARTS_BUDGET_S} s"
    )
