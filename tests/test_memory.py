"""Tests of ``fmw.memory.keep_freed_memory``: on glibc, a loop that allocates and frees a large
tensor stops taking fresh pages from the kernel (counted as minor page faults, in a fresh process so
that this one's allocator is left as it is); elsewhere nothing changes and it says so; the ``fmw``
command line asks for it unless ``FMW_KEEP_FREED_MEMORY`` says no, and never for the dashboard."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from fmw import memory
from fmw.cli import main as fmw_main

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Faults per pass of a loop that fills and frees a 64 MiB tensor: by default the fewest of passes 2 to 6
# (every one takes fresh pages); after the call the most of passes 13 to 16 (the heap needs a few
# passes to settle: a freed block is reused once it has merged with its neighbours into one large
# enough for the aligned allocation torch asks for).
LOOP = """
import json, resource, torch
from fmw.memory import keep_freed_memory

def faults_per_pass(passes):
    counts = []
    for _ in range(passes):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, freed at once
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    return counts

default = min(faults_per_pass(6)[1:])
kept = keep_freed_memory()
print(json.dumps({"default": default, "kept": kept, "after": max(faults_per_pass(16)[12:])}))
"""


@pytest.mark.skipif(not GLIBC, reason="keep_freed_memory changes glibc's allocator only; this C library is not glibc")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    done = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, timeout=120, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    pages = 64 * 2**20 // 4096
    assert figures["kept"] is True
    assert figures["default"] >= pages // 2, f"by default every pass takes fresh pages: {figures}"
    assert figures["after"] <= pages // 100, f"with freed memory kept a pass reuses the last one's: {figures}"


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_kept", False)
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize(
    ("value", "wanted"), [("", True), ("1", True), ("0", False), ("off", False), (" False ", False), ("no", False)]
)
def test_the_variable_opts_out(monkeypatch: pytest.MonkeyPatch, value: str, wanted: bool) -> None:
    monkeypatch.setenv(memory.KEEP_FREED_MEMORY_VARIABLE, value)
    assert memory.keep_freed_memory_wanted() is wanted


def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Replace ``keep_freed_memory`` by a stand-in that notes each call (the real one would change
    this test process's allocator)."""
    asked: list[bool] = []

    def noted() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(memory, "keep_freed_memory", noted)
    return asked


@pytest.mark.parametrize(("value", "calls"), [("", 1), ("0", 0)])
def test_the_command_line_keeps_freed_memory_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, calls: int
) -> None:
    asked = record_calls(monkeypatch)
    monkeypatch.setenv(memory.KEEP_FREED_MEMORY_VARIABLE, value)
    assert fmw_main(["info", "--overhead"]) == 0
    assert "multiply-adds" in capsys.readouterr().out
    assert len(asked) == calls


def test_the_dashboard_command_keeps_the_default_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = record_calls(monkeypatch)
    monkeypatch.delenv(memory.KEEP_FREED_MEMORY_VARIABLE, raising=False)
    assert fmw_main(["dashboard", "--help"]) == 0
    assert asked == []
