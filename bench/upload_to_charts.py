"""Benchmark: upload of a 12-megapixel JPEG to every chart of the Compare view drawn, in headless
Chromium against `streamlit run`, with 1 and with 6 random-weight checkpoints; prints the ratio 6/1.

Run: python -m bench.upload_to_charts [--repeats 3]   (needs /usr/bin/chromium and playwright)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.browser_support import (
    CHARTS_SHOW,
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    dashboard_server,
    image_upload_input,
    phone_photo,
)
from tests.conftest import make_checkpoint

KINDS = ("none", "scale", "spatial", "channel", "cbam", "eca")
TIMEOUT_MS = 120_000


def upload_to_charts(kinds: tuple[str, ...], photo: Path, directory: Path, repeats: int) -> list[float]:
    """Seconds from choosing ``photo`` to every chart drawn, once per repeat, each in a fresh page
    of one server (so the model cache is warm, as for a user's second image, but no analysis is)."""
    from playwright.sync_api import sync_playwright

    checkpoints = directory / f"{len(kinds)}-checkpoints"
    for seed, kind in enumerate(kinds, start=11):
        make_checkpoint(checkpoints / f"{kind}.safetensors", kind, seed=seed)
    times = []
    with (
        dashboard_server(checkpoints, directory / f"streamlit-{len(kinds)}.log") as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            for repeat in range(repeats):
                copy = directory / f"photo-{len(kinds)}-{repeat}.jpg"  # a new name and digest: nothing cached
                copy.write_bytes(photo.read_bytes() + bytes([repeat]))
                page = browser.new_page(viewport={"width": 1800, "height": 2000})
                page.goto(server.url, wait_until="domcontentloaded")
                page.wait_for_function(CHARTS_SHOW, arg=["sample: chelsea", len(kinds)], timeout=TIMEOUT_MS)
                start = time.perf_counter()
                image_upload_input(page).set_input_files(str(copy))
                page.wait_for_function(CHARTS_SHOW, arg=[copy.name, len(kinds)], timeout=TIMEOUT_MS, polling=50)
                times.append(time.perf_counter() - start)
                page.close()
        finally:
            browser.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="uploads per checkpoint count (median reported)")
    arguments = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"not run: {CHROMIUM_SKIP_REASON}")
        return 1
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        photo = phone_photo(directory / "phone-photo.jpg")
        one = upload_to_charts(KINDS[:1], photo, directory, arguments.repeats)
        six = upload_to_charts(KINDS, photo, directory, arguments.repeats)
    print(f"{platform.machine()}, headless Chromium, 12 MP JPEG (4000x3000), median of {arguments.repeats}")
    print(f"1 checkpoint:  {statistics.median(one):.2f} s  (runs {', '.join(f'{t:.2f}' for t in one)})")
    print(f"6 checkpoints: {statistics.median(six):.2f} s  (runs {', '.join(f'{t:.2f}' for t in six)})")
    print(f"ratio 6/1: {statistics.median(six) / statistics.median(one):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
