"""Helpers shared by the dashboard's AppTest files: figure specs, widgets by label, and the files
behind download buttons (made on click, so the test runs the button's deferred callable)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fmw.analysis.findings import LEVEL_TOLERANCE
from tests.conftest import REPO

APP = str(REPO / "dashboard" / "main.py")  # the page script; dashboard/app.py serves it
TIMEOUT = 60


def array(value) -> np.ndarray:
    """A figure-spec array: plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(size) for size in shape.split(",")]
        return flat.reshape(shape) if shape else flat
    return np.asarray(value, dtype=float)


def figures(at) -> dict[str, dict]:
    """Every figure on the page by key: plotly charts' specs and the figures the canvas component draws
    (``dashboard.figure_canvas``: the same plotly JSON, sent as the component's data)."""
    drawn = {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}
    for element in at.get("bidi_component"):
        data = json.loads(element.proto.json)
        if isinstance(data, dict) and "figure" in data:
            drawn[data["key"]] = data["figure"]
    return drawn


def widget(widgets, label: str):
    return next(item for item in widgets if item.label == label)


@dataclass
class DownloadedFile:
    file_name: str
    mime: str
    data: bytes


class Downloads:
    """Records the media manager of every AppTest run, so a download button's file can be made."""

    def __init__(self, monkeypatch) -> None:
        from streamlit.runtime.media_file_manager import MediaFileManager
        from streamlit.testing.v1 import app_test

        self.managers: list[MediaFileManager] = []
        recorded = self.managers

        class RecordingManager(MediaFileManager):
            def __init__(self, storage) -> None:
                super().__init__(storage)
                recorded.append(self)

        monkeypatch.setattr(app_test, "MediaFileManager", RecordingManager)

    def fetch(self, button) -> DownloadedFile:
        """The file behind ``button`` (an AppTest download button) from the latest run."""
        manager = self.managers[-1]
        entry = manager._deferred_callables[button.proto.deferred_file_id]
        data = entry["callable"]()
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = data.read()
            data = data.encode() if isinstance(data, str) else data
        return DownloadedFile(entry["filename"] or "", entry["mimetype"] or "", data)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the app sets one thread for itself; do not leak that into other tests


def steepest_channel_rise(checkpoints: Path, kinds) -> str:
    """Of ``kinds``' statistics files in ``checkpoints/stats`` (read as JSON, not through
    ``fmw.analysis.findings``), the kind whose channel-layout gate's class specificity rises most from
    its first site to its last, among those that rise by ``LEVEL_TOLERANCE`` or more and do not peak
    above their last site by that much: the model Gate statistics opens on."""
    rises: dict[str, float] = {}
    for kind in kinds:
        sites = json.loads((checkpoints / "stats" / f"{kind}.json").read_text())["sites"]
        for stage in dict.fromkeys(name for site in sites for name in site["stages"]):
            stages = [site["stages"][stage] for site in sites if stage in site["stages"]]
            values = [part["specificity"] for part in stages if part["specificity"] is not None]
            layouts = {part.get("layout", re.sub(r"_\d+$", "", stage)) for part in stages}  # older files: by name
            if layouts != {"channel"} or len(values) < 2:
                continue
            rise = values[-1] - values[0]
            if rise >= LEVEL_TOLERANCE and max(values) - values[-1] < LEVEL_TOLERANCE:
                rises[kind] = max(rise, rises.get(kind, rise))
    return max(rises, key=rises.__getitem__)
