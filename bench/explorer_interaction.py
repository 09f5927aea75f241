"""Benchmark: how long the Layer explorer takes to redraw after a change of each of its controls that needs
no forward pass, in headless Chromium with the shipped checkpoints, for this working tree and for a
baseline commit, one after the other on this machine.

Run: python -m bench.explorer_interaction [--baseline REV] [--changes 6]   (needs /usr/bin/chromium)

The controls, each changed ``--changes`` times to the next of its options (cycling): the weighting site,
the channel order and the colour scale (all three in the explorer's fragment, on the model it opens on),
then the checkpoint (a rerun of the whole page; the server's warm-up analysed the default sample photo
with every shipped checkpoint, so its analyses come from the cache, no forward pass either).

A change's time runs from the click on the new option to the view redrawn: the script run the change
started has finished (Streamlit's status widget is gone), the grids figure (before | after | difference:
the page's first chart in document order) is a new one (a new plotly chart node, or a canvas figure with a
new version), and every chart on the page is drawn, none left stale from the previous run. The server
and the tree served are those of ``bench.dashboard_interaction``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.dashboard_interaction import REPO, TIMEOUT_MS, baseline_tree, load, server
from tests.browser_support import CHARTS, CHROMIUM, CHROMIUM_OPTIONS, CHROMIUM_SKIP_REASON, PAGE_STATE

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The charts of the page in document order, each node numbered once (the number stays with the node).
ORDERED = f"""(() => {{
  window.fmwCharts = window.fmwCharts || 0;
  const charts = {CHARTS}.sort((a, b) =>
    a.node.compareDocumentPosition(b.node) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1);
  for (const c of charts) if (!c.node.fmwChart) c.node.fmwChart = ++window.fmwCharts;
  return charts;
}})()"""
# What identifies the figure a chart shows: its node (plotly charts get a new one for a new figure) and
# the version a canvas figure was sent; GRIDS: that of the grids figure, the first chart.
FIGURE = "(c => c.node.fmwChart + ':' + (c.node.dataset.version || ''))"
GRIDS = f"() => {{ const charts = {ORDERED}; return charts.length ? {FIGURE}(charts[0]) : null; }}"
# True once the run is over, every chart is drawn and current, and the grids figure is not ``before``.
REDRAWN = f"""(before) => {{
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const charts = {ORDERED};
  if (running || !charts.length || charts.some(c => c.stale || !c.drawn)) return false;
  return {FIGURE}(charts[0]) !== before;
}}"""
SELECT_BOXES = ("Weighting site", "Checkpoint")  # by label; the others are radios
CONTROLS = ("Weighting site", "Order channels by", "Colour scale", "Checkpoint")  # in the order changed


def change(page: Page, control: str) -> float:
    """Set ``control`` to its next option; seconds from the click on it to the view redrawn."""
    before = page.evaluate(GRIDS)
    if control in SELECT_BOXES:
        box = page.get_by_role("combobox", name=control, exact=True)
        current = box.input_value()
        box.click()
        options = page.get_by_role("option")
        options.first.wait_for(timeout=TIMEOUT_MS)
        names = options.all_inner_texts()
        choice = options.nth((names.index(current) + 1) % len(names) if current in names else 0)
    else:
        group = page.get_by_test_id("stRadio").filter(has_text=control)
        checked = group.evaluate("g => [...g.querySelectorAll('input[type=radio]')].findIndex(i => i.checked)")
        labels = group.get_by_test_id("stRadioOption")
        choice = labels.nth((checked + 1) % labels.count())
    start = time.perf_counter()
    choice.click()
    page.wait_for_function(REDRAWN, arg=before, timeout=TIMEOUT_MS, polling=20)
    return time.perf_counter() - start


def explorer_times(url: str, changes: int) -> dict[str, list[float]]:
    """Seconds to redraw after each of ``changes`` changes of every control, by control."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 2000})
            page.goto(f"{url}/explorer", wait_until="domcontentloaded")
            try:
                page.wait_for_function(REDRAWN, arg=None, timeout=TIMEOUT_MS, polling=50)
                for control in CONTROLS:
                    times[control] = [change(page, control) for _ in range(changes)]
            except PlaywrightTimeout:
                raise RuntimeError(f"the explorer did not redraw: {page.evaluate(PAGE_STATE)}") from None
        finally:
            browser.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a commit to measure first, e.g. HEAD~3")
    parser.add_argument("--changes", type=int, default=6, help="changes of each control (median and max of them)")
    arguments = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"not run: {CHROMIUM_SKIP_REASON}")
        return 1
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {load()}, headless Chromium 1800x2000, Layer explorer")
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        for revision in [arguments.baseline, None] if arguments.baseline else [None]:
            tree = REPO if revision is None else baseline_tree(revision, directory / "baseline")
            with server(tree, directory / ("tree.log" if revision is None else "baseline.log"), []) as url:
                measured = explorer_times(url, arguments.changes)
            name = "this tree" if revision is None else f"baseline {revision}"
            for control, times in measured.items():
                median, each = statistics.median(times), ", ".join(f"{t:.2f}" for t in times)
                print(f"{name:>22} | {control:<17} | median {median:.2f} s, max {max(times):.2f} s ({each})")
    print(f"load afterwards {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
