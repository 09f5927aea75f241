"""Benchmark: seconds from opening the dashboard's URL to its first chart drawn, in headless Chromium
at 1500x1000 with the six shipped checkpoints, on a server that has just started and answers its
health check (a fresh process: no page run yet, nothing cached; a fresh browser context: nothing in
the browser cache). Started as `fmw dashboard` and as `streamlit run dashboard/app.py` (the same
server; both warm up before they answer), against a page with no model work (one small chart) served
by `streamlit run` the same way; prints the medians and the ratios to that page. Rounds interleave
the three, so machine load hits them alike.

Run: python -m bench.startup [--repeats 3]   (needs /usr/bin/chromium and playwright)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    FIRST_CHART,
    REPO,
    dashboard_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ViewportSize

TIMEOUT_MS = 120_000
VIEWPORT: ViewportSize = {"width": 1500, "height": 1000}
NO_MODEL_WORK = """import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")
st.header("A page with no model work")
st.plotly_chart(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])), key="chart")
"""


def first_chart_seconds(browser: Browser, url: str) -> float:
    """Seconds from ``goto(url)`` to the first plotly chart drawn, in a fresh browser context."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(FIRST_CHART, timeout=TIMEOUT_MS, polling=20)
        return time.perf_counter() - start
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per variant (median reported)")
    arguments = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"not run: {CHROMIUM_SKIP_REASON}")
        return 1
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"fmw dashboard": [], "streamlit run": [], "no model work": []}
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        directory = Path(folder)
        (directory / "no_model_work.py").write_text(NO_MODEL_WORK)
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            for repeat in range(arguments.repeats):
                for variant in times:
                    script = directory / "no_model_work.py" if variant == "no model work" else None
                    how = variant if script is None else "streamlit run"
                    log = directory / f"{variant.replace(' ', '-')}-{repeat}.log"
                    with dashboard_server(REPO / "checkpoints", log, how=how, script=script) as server:
                        times[variant].append(first_chart_seconds(browser, server.url))
        finally:
            browser.close()
    baseline = statistics.median(times["no model work"])
    print(f"{platform.machine()}, headless Chromium {VIEWPORT['width']}x{VIEWPORT['height']}, six shipped checkpoints,")
    print(f"open the URL -> first chart drawn, fresh server each time, median of {arguments.repeats}:")
    for variant, seconds in times.items():
        runs = ", ".join(f"{value:.2f}" for value in seconds)
        median = statistics.median(seconds)
        print(f"{variant:>14}: {median:.2f} s  (ratio to no model work {median / baseline:.2f}x; runs {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
