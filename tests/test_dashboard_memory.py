"""The server's memory is bounded by bytes: several sessions each upload distinct photos (so nothing is
shared between them), and the dashboard's result cache never holds more than its budget
(``FMW_RESULT_CACHE_MB``), nor does the process's resident memory grow by more than that budget, plus
the uploaded files' bytes (Streamlit's uploader holds them for AppTest's sessions), plus a fixed
allowance (the allocators' slack, the sessions' own state). The app runs under the dashboard's own
Streamlit settings (``dashboard/streamlit.toml``), which turn off Streamlit's full garbage collection
after every script run: resident memory is also read after every upload without collecting, and held
to the same bound."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard import caching
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, restore_threads  # noqa: F401

BUDGET_MB = 24
SESSIONS, UPLOADS = 3, 8  # 24 distinct photos: about 4 times the budget if every result were kept
ALLOWANCE_MB = 64  # neither cached nor uploaded: allocator slack, streamlit's per-session state


def resident_mb(collect: bool = True) -> float:
    """This process's resident set size, from /proc (the kernel's own count of its pages in memory),
    after a garbage collection (unless ``collect`` is false: what the server holds while it runs) and,
    under glibc, after handing the allocator's free pages back (``malloc_trim``), so that what is
    counted is what the process holds, not what it freed."""
    if collect:
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the count includes the allocator's slack
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / caching.MB


@pytest.fixture
def dashboard_settings():
    """Streamlit's runner settings as the dashboard sets them (whatever the working directory)."""
    from streamlit import config

    settings = tomllib.loads((Path(APP).parent / "streamlit.toml").read_text())["runner"]
    before = {key: config.get_option(f"runner.{key}") for key in settings}
    for key, value in settings.items():
        config.set_option(f"runner.{key}", value)
    yield settings
    for key, value in before.items():
        config.set_option(f"runner.{key}", value)


def photo(seed: int) -> bytes:
    """A 2000x1500 JPEG of noise over a gradient: distinct bytes and pixels for every seed."""
    generator = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 2000, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp * 0.6 + generator.normal(100, 40, (1500, 2000, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm (Linux)")
def test_memory_stays_within_the_cache_budget_over_many_uploads(
    tmp_path,
    monkeypatch,
    restore_threads,  # noqa: F811
    dashboard_settings,
) -> None:
    from streamlit.testing.v1 import AppTest

    assert dashboard_settings["postScriptGC"] is False, "measured as the dashboard runs"

    directory = tmp_path / "checkpoints"
    for seed, kind in enumerate(("channel", "cbam", "spatial", "eca")):
        make_checkpoint(directory / f"{kind}.safetensors", kind, seed=seed)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    monkeypatch.setenv(caching.RESULT_BUDGET_VARIABLE, str(BUDGET_MB))
    caching.RESULTS.clear()
    warm = AppTest.from_file(APP, default_timeout=120).run()  # models opened, the sample analysed
    assert not warm.exception
    del warm
    start, peak_held, peak_running, uploaded = resident_mb(), 0, 0.0, 0
    for session in range(SESSIONS):
        app = AppTest.from_file(APP, default_timeout=120).run()
        for index in range(UPLOADS):
            name, data = f"photo-{session}-{index}.jpg", photo(100 * session + index)
            uploaded += len(data)
            app.file_uploader(key="uploads").set_value([(name, data, "image/jpeg")]).run()
            assert not app.exception and not app.error
            assert app.selectbox(key="compare-image").value == name, "each upload is analysed and shown"
            peak_held = max(peak_held, caching.RESULTS.held)
            peak_running = max(peak_running, resident_mb(collect=False) - start)
        del app
    grown = resident_mb() - start
    print(
        f"result cache: at most {peak_held / caching.MB:.1f} MB held (budget {BUDGET_MB} MB); "
        f"resident memory grew {grown:.1f} MB over {SESSIONS * UPLOADS} uploads of {uploaded / caching.MB:.1f} MB "
        f"(start {start:.0f} MB), at most {peak_running:.1f} MB above the start between uploads, uncollected"
    )
    bound = BUDGET_MB + uploaded / caching.MB + ALLOWANCE_MB
    assert peak_held <= BUDGET_MB * caching.MB
    assert grown <= bound
    assert peak_running <= bound, "without Streamlit's collection after each run, memory still stays bounded"
    caching.RESULTS.clear()
