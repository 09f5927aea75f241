"""Shared pieces of the browser tests and benchmarks: a `streamlit run` of the dashboard on a free
loopback port with a given checkpoint folder, Chromium's launch options, and the charts-drawn check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_SKIP_REASON = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
CHROMIUM_OPTIONS = {
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

# True once every plotly chart on the page is drawn, at least `minimum` of them, all showing image `name`.
CHARTS_SHOW = """([name, minimum]) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return !running && plots.length >= minimum && plots.every(
    p => p._fullLayout && p.querySelector('.main-svg') && p.layout && p.layout.meta && p.layout.meta.image === name);
}"""


@dataclass(frozen=True)
class DashboardServer:
    url: str
    pid: int
    log: Path


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


@contextmanager
def dashboard_server(checkpoints: Path, log: Path) -> Iterator[DashboardServer]:
    """`streamlit run dashboard/app.py` on 127.0.0.1 with FMW_CHECKPOINT_DIR=``checkpoints``,
    output to ``log``; yields once /_stcore/health answers, stops the server afterwards."""
    port = free_port()
    environment = {**os.environ, "FMW_CHECKPOINT_DIR": str(checkpoints)}
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "dashboard/app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
            ],
            cwd=REPO,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _healthy(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not become healthy:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield DashboardServer(url=url, pid=server.pid, log=log)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
