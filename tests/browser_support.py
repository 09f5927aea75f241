"""Shared pieces of the browser tests and benchmarks: the dashboard served on a free port with a given
checkpoint folder (by `streamlit run`, by `fmw dashboard`, or any script), Chromium's launch options,
the charts-drawn checks, and the addresses a server process listens on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_SKIP_REASON = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
CHROMIUM_OPTIONS: dict[str, Any] = {
    "executable_path": str(CHROMIUM),
    "headless": True,
    "args": [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ],
}
STARTUP_SECONDS = 90
IMAGES_UPLOADER_LABEL = "Your images"  # the sidebar's image uploader (another uploader takes models)

# Every chart on the page: plotly charts, and the figures the canvas component draws (div.fmw-figure,
# dashboard/figure_canvas.py), each as {node, drawn, stale, image, title}. A canvas figure is drawn
# once the version it was last sent is on its canvas.
CHARTS = """(() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({node: p,
    drawn: !!(p._fullLayout && p.querySelector('.main-svg')),
    image: p.layout && p.layout.meta ? p.layout.meta.image : null,
    title: p.layout && p.layout.title ? String(p.layout.title.text) : null}))
  .concat([...document.querySelectorAll('.fmw-figure')].map(f => ({node: f,
    drawn: !!f.dataset.version && f.dataset.drawn === f.dataset.version,
    image: f.dataset.image || null, title: f.dataset.title || null})))
  .map(c => ({...c, stale: !!c.node.closest('[data-stale="true"]')})))()"""
# True once one chart is drawn on the page: what a user first sees of the results.
FIRST_CHART = f"() => {CHARTS}.some(c => c.drawn)"
# True once every current chart on the page is drawn, at least `minimum` of them, all showing image
# `name`. Charts Streamlit keeps on screen from an earlier run (marked data-stale, e.g. the last view's
# while the next one runs) do not count.
CHARTS_SHOW = f"""([name, minimum]) => {{
  const charts = {CHARTS}.filter(c => !c.stale);
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return !running && charts.length >= minimum && charts.every(c => c.drawn && c.image === name);
}}"""
# How many charts (plotly or canvas) the page has.
CHART_COUNT = f"() => {CHARTS}.length"
# The images the page's charts say they show, each once.
CHART_IMAGES = f"() => [...new Set({CHARTS}.map(c => c.image))]"


# What the page shows, for a message when a wait on CHARTS_SHOW times out.
PAGE_STATE = f"""() => {{
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  return {{running: status ? status.innerText : null,
    charts: {CHARTS}.map(c => ({{drawn: c.drawn, stale: c.stale, image: c.image, title: c.title}})),
    alerts: [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlert"]')]
      .map(e => e.innerText.slice(0, 300)),
    uploads: [...document.querySelectorAll('[data-testid="stFileUploaderFile"]')].map(e => e.innerText),
    images: [...document.querySelectorAll('[data-testid="stSelectbox"]')]
      .map(e => e.innerText.replace(/\\n/g, ' ').slice(0, 120))}};
}}"""


def wait_for_charts(page, name: str, minimum: int, timeout_ms: float, log: Path | None = None) -> None:
    """Wait until CHARTS_SHOW holds for image ``name`` and at least ``minimum`` charts; on a timeout,
    fail with what the page showed instead (and the end of the server's ``log``)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(CHARTS_SHOW, arg=[name, minimum], timeout=timeout_ms)
    except PlaywrightTimeout:
        state = page.evaluate(PAGE_STATE)
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        raise AssertionError(
            f"after {timeout_ms / 1000:.0f} s the charts do not all show {name!r} (at least {minimum}): "
            f"{state}\nserver log:\n{tail}"
        ) from None


@dataclass(frozen=True)
class DashboardServer:
    url: str
    pid: int
    log: Path
    port: int


def image_upload_input(page):
    """The file input of the sidebar's image uploader on a Playwright page (sync or async API)."""
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text=IMAGES_UPLOADER_LABEL)
    return uploader.locator("input[type=file]")


def phone_photo(path: Path) -> Path:
    """A 4000x3000 (12 MP) JPEG made by upscaling scikit-image's coffee photo."""
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


SERVERS = {
    # how the dashboard is started: `streamlit run` (imports PyTorch on the first page) and `fmw dashboard`
    # (warms up first: python -m dashboard); both bind 127.0.0.1 by default (.streamlit/config.toml, the CLI)
    "streamlit run": [sys.executable, "-m", "streamlit", "run", "dashboard/app.py"],
    "fmw dashboard": [sys.executable, "-m", "fmw", "dashboard"],
}


@contextmanager
def dashboard_server(
    checkpoints: Path,
    log: Path,
    *,
    how: str = "streamlit run",
    script: Path | None = None,
    address: str | None = "127.0.0.1",
    arguments: Sequence[str] = (),
) -> Iterator[DashboardServer]:
    """The dashboard (``how``: a key of ``SERVERS``), or ``script`` by `streamlit run`, on a free port
    with FMW_CHECKPOINT_DIR=``checkpoints``, output to ``log``; ``--server.address`` when ``address`` is
    given (None: the default binding), after ``arguments`` (``fmw dashboard --model ...``). Yields once
    /_stcore/health answers; stops the server afterwards."""
    port = free_port()
    environment = {**os.environ, "FMW_CHECKPOINT_DIR": str(checkpoints)}
    command = [sys.executable, "-m", "streamlit", "run", str(script)] if script is not None else SERVERS[how]
    options = [*arguments, "--server.port", str(port), "--server.headless", "true"]
    if address is not None:
        options += ["--server.address", address]
    with open(log, "wb") as output:
        server = subprocess.Popen(  # its own process group: `fmw dashboard` runs streamlit as a child
            [*command, *options],
            cwd=REPO,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _healthy(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not become healthy:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield DashboardServer(url=url, pid=server.pid, log=log, port=port)
        finally:
            _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to ``server``'s process group (it and what it started); SIGKILL to what is left after 15 s."""
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        server.poll()  # reap the leader, so that only live processes keep the group
        try:
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def listening_addresses(port: int) -> set[str]:
    """The local IP addresses with a socket listening on ``port`` (TCP over IPv4 and IPv6), read from
    /proc/net/tcp{,6}: {"127.0.0.1"} for a server bound to loopback only, {"0.0.0.0"} for all interfaces."""
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, _, port_hex = local.partition(":")
            if state != "0A" or int(port_hex, 16) != port or len(host) != width:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(host)
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
    return addresses


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
