"""Browser test: Debian's chromium, driven by Playwright, against a real `streamlit run` of the
dashboard with six random-weight checkpoints; uploads a 12-megapixel JPEG and times it to charts."""

from __future__ import annotations

import time

import pytest

from tests.browser_support import (
    CHART_COUNT,
    CHARTS_SHOW,
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    dashboard_server,
    image_upload_input,
    phone_photo,
)
from tests.conftest import REPO, make_checkpoint

KINDS = ("none", "scale", "spatial", "channel", "cbam", "eca")
ARTIFACTS = REPO / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_SKIP_REASON)]


@pytest.fixture
def dashboard_url(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for seed, kind in enumerate(KINDS, start=11):
        make_checkpoint(checkpoints / f"{kind}.safetensors", kind, seed=seed)
    with dashboard_server(checkpoints, tmp_path / "streamlit.log") as server:
        yield server.url


def test_upload_a_phone_photo_and_see_every_chart(dashboard_url, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = phone_photo(tmp_path / "phone-photo.jpg")
    expected_charts = len(KINDS)  # the Compare page draws one chart per checkpoint column
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 2000})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            page.wait_for_function(CHARTS_SHOW, arg=["sample: chelsea", expected_charts], timeout=120_000)

            start = time.perf_counter()
            image_upload_input(page).set_input_files(str(photo))
            page.wait_for_function(CHARTS_SHOW, arg=[photo.name, expected_charts], timeout=60_000, polling=50)
            upload_to_charts = time.perf_counter() - start

            # printed, not asserted: timings are measured by bench/upload_to_charts.py, never by a test
            print(f"\nupload-to-charts with {len(KINDS)} checkpoints, 12 MP JPEG: {upload_to_charts:.2f} s")
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            assert page.evaluate(CHART_COUNT) == expected_charts
            for kind in KINDS:
                assert page.get_by_text(kind, exact=True).first.is_visible()
            tables = page.locator('[data-testid="stMarkdownContainer"] table')
            assert tables.count() == len(KINDS)
            assert tables.first.locator("tbody tr").count() == 5
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)
        finally:
            browser.close()
