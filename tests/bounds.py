"""Resource bounds for the fuzz and load tests: a per-call time limit (SIGALRM) and peak resident
memory read from /proc (VmHWM, resettable for this process through /proc/self/clear_refs)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TookTooLongError(Exception):
    """Raised inside the code under test when it overruns ``time_limit``; it is no decode or
    checkpoint error, so a test that only allows those fails on it."""


def memory_bytes(key: str, pid: int | str = "self") -> int:
    """A size field of /proc/<pid>/status in bytes: VmRSS (now) or VmHWM (the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(f"/proc/{pid}/status has no {key} field")


@contextmanager
def peak_memory_growth() -> Iterator[list[int]]:
    """Yields a one-element list that, after the block, holds how far this process's peak resident
    memory rose above its resident memory at the start of the block, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    start = memory_bytes("VmRSS")
    growth = [0]
    try:
        yield growth
    finally:
        growth[0] = max(0, memory_bytes("VmHWM") - start)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TookTooLongError`` in the main thread when the block runs longer than ``seconds``.
    An alarm already set (pytest-timeout's) is put back afterwards with its remaining time."""

    def overrun(signum, frame):
        raise TookTooLongError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, overrun)
    started = time.monotonic()
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            remaining = max(outer_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


def record_pixel_loads(monkeypatch) -> list[str]:
    """Record every pixel decode PIL starts (``ImageFile.load``) from now on, by format: a refusal
    "before decoding" must leave the list empty."""
    from PIL import ImageFile

    loads: list[str] = []
    original = ImageFile.ImageFile.load

    def recording_load(image):
        loads.append(str(image.format))
        return original(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return loads
