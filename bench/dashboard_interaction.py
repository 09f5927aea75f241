"""Benchmark: how long the Compare view takes to redraw after a widget change that needs no forward pass:
the depth slider stepped once through every site from the first, in several fresh sessions (first visits:
the server builds each depth's figures), then moved from the first site to the last and back (figures kept
from before). In headless Chromium, with the shipped checkpoints and with those plus four torchvision
models (random weights, 224 px), for this working tree and for a baseline commit, one after the other on
this machine; the load average is printed before and after.

Run: python -m bench.dashboard_interaction [--baseline REV] [--repeats 5] [--sessions 3]   (needs /usr/bin/chromium)

The baseline is the tree of REV (``git archive``), served with PYTHONPATH pointing at it so its
``fmw`` and ``dashboard`` packages are the ones imported. A redraw ends when the app is no longer
running and every Compare column's figure is drawn and current (none stale): after a step, once at
least one column shows a new site (its title names the site; a step moves only the columns whose
nearest site changes); after a move to the end or the start, once every column does."""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.browser_support import (
    CHARTS,
    CHROMIUM,
    CHROMIUM_OPTIONS,
    CHROMIUM_SKIP_REASON,
    _healthy,
    _stop_group,
    free_port,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "fmw" / "checkpoints"
TORCHVISION = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf")
TIMEOUT_MS = 300_000
# The Compare columns' figures (canvas figures, or plotly charts in trees before them), titled
# "<model><br><site>".
COLUMNS = f"{CHARTS}.filter(c => (c.title || '').includes('<br>'))"
COMPARE_TITLES = f"() => {COLUMNS}.map(c => c.title)"
REDRAWN = f"""([before, count]) => {{
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const columns = {COLUMNS};
  return !running && columns.length === count && columns.every(c => !c.stale && c.drawn && !before.includes(c.title));
}}"""
# The same after one step of the slider, which moves only the columns whose nearest site changes: at least
# one column shows a new site, and every column is drawn and current.
STEPPED = f"""([before, count]) => {{
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const columns = {COLUMNS};
  return !running && columns.length === count && columns.every(c => !c.stale && c.drawn)
    && columns.some(c => !before.includes(c.title));
}}"""


@contextmanager
def server(tree: Path, log: Path, models: list[dict], checkpoints: Path = SHIPPED) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` of ``tree`` on a free port, the checkpoints in ``checkpoints``
    (the shipped ones by default) and ``models`` (``FMW_MODELS``); yields its URL once healthy."""
    port = free_port()
    environment = {
        **os.environ,
        "FMW_CHECKPOINT_DIR": str(checkpoints),
        "FMW_MODELS": json.dumps(models),
        "PYTHONPATH": str(tree),
    }
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=tree, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield url
        finally:
            _stop_group(process)


def redraw_times(url: str, columns: int, repeats: int, sessions: int) -> dict[str, list[float]]:
    """Seconds from a depth-slider key press to the Compare columns redrawn: stepping once through every
    site from the first, in each of ``sessions`` fresh pages (each a new session, so every step is a
    first visit: the server builds that depth's figures), then, in the first page, ``2 * repeats``
    moves to the last site and back to the first (the figures kept from before)."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"first visits": [], "back and forth": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            for session in range(sessions):
                page = browser.new_page(viewport={"width": 1800, "height": 2000})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_function(REDRAWN, arg=[[], columns], timeout=TIMEOUT_MS, polling=50)
                slider = page.get_by_role("slider", name="Depth")
                depths = int(slider.get_attribute("max") or 0) + 1  # an <input type=range> over the site numbers
                moves = [("ArrowRight", STEPPED, "first visits")] * (depths - 1)
                if session == 0:
                    moves += [(key, REDRAWN, "back and forth") for _ in range(repeats) for key in ("Home", "End")]
                for key, done, kind in moves:
                    page.wait_for_timeout(300)  # the last updates of the previous move land before its titles are read
                    before = page.evaluate(COMPARE_TITLES)
                    slider.focus()
                    start = time.perf_counter()
                    page.keyboard.press(key)
                    page.wait_for_function(done, arg=[before, columns], timeout=TIMEOUT_MS, polling=20)
                    times[kind].append(time.perf_counter() - start)
                page.close()
        finally:
            browser.close()
    return times


def load() -> str:
    """The load averages over 1, 5 and 15 minutes, printed before and after a run."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def baseline_tree(revision: str, directory: Path) -> Path:
    """The files of ``revision``, unpacked into ``directory`` (the repository is left as it is)."""
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def checkpoint_folder(names: list[str], directory: Path) -> Path:
    """A checkpoint folder in ``directory`` holding (as links) the shipped checkpoints ``names`` and the
    shipped statistics."""
    directory.mkdir()
    for name in names:
        (directory / f"{name}.safetensors").symlink_to(SHIPPED / f"{name}.safetensors")
    (directory / "stats").symlink_to(SHIPPED / "stats")
    return directory


def measure(
    tree: Path, directory: Path, name: str, repeats: int, sessions: int, checkpoints: Path
) -> dict[str, list[float]]:
    shipped = len(list(checkpoints.glob("*.safetensors")))
    zoo = [{"spec": f"torchvision:{model}", "random_weights": True} for model in TORCHVISION]
    results = {}
    for label, models in ((f"{shipped} shipped", []), (f"{shipped} shipped + 4 torchvision", zoo)):
        with server(tree, directory / f"{name}-{len(models)}.log", models, checkpoints) as url:
            for kind, times in redraw_times(url, shipped + len(models), repeats, sessions).items():
                results[f"{label}, {kind}"] = times
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a commit to measure first, e.g. HEAD~3")
    parser.add_argument("--repeats", type=int, default=5, help="slider moves each way (median of 2 x repeats)")
    parser.add_argument("--sessions", type=int, default=3, help="fresh pages that step through every site once")
    available = sorted(path.stem for path in SHIPPED.glob("*.safetensors"))
    parser.add_argument(
        "--shipped",
        default=",".join(available),
        help=f"the shipped checkpoints to serve, comma-separated (default: all, {', '.join(available)}; the "
        "redraw target is stated for the six first shipped: none,scale,spatial,channel,cbam,eca)",
    )
    arguments = parser.parse_args(argv)
    names = [name.strip() for name in arguments.shipped.split(",") if name.strip()]
    if not names or set(names) - set(available):
        parser.error(f"--shipped {arguments.shipped!r}: give names among {', '.join(available)}, comma-separated")
    if not CHROMIUM.exists():
        print(f"not run: {CHROMIUM_SKIP_REASON}")
        return 1
    trees: list[tuple[str, Path | None]] = [("this tree", REPO)]
    if arguments.baseline:
        trees.insert(0, (f"baseline {arguments.baseline}", None))
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {load()}, headless Chromium 1800x2000, Compare's depth")
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        checkpoints = checkpoint_folder(names, directory / "checkpoints")
        for name, tree in trees:
            if tree is None:
                tree = baseline_tree(arguments.baseline, directory / "baseline")
            results = measure(tree, directory, name.split()[0], arguments.repeats, arguments.sessions, checkpoints)
            for label, times in results.items():
                runs = ", ".join(f"{t:.2f}" for t in times)
                median = statistics.median(times)
                print(f"{name:>17} | {label:<43} | median {median:.2f} s, max {max(times):.2f} s ({runs})")
    print(f"load afterwards {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
