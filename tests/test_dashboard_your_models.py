"""Browser test: `fmw dashboard --model path/to/my_model.py:build` shows the user's own model,
written in plain PyTorch, in Compare next to the shipped-style checkpoints, with its discovered
weighting site; the model's file is imported by the server the user started, never by a browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_support import CHARTS_SHOW, CHROMIUM, CHROMIUM_OPTIONS, CHROMIUM_SKIP_REASON, dashboard_server
from tests.conftest import make_checkpoint

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_SKIP_REASON)]

MY_MODEL = """
import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        b, c = x.shape[:2]
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3)))).view(b, c, 1, 1)


def build():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), Gate(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)
    )
"""


def test_fmw_dashboard_shows_a_model_from_the_command_line_in_compare(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    checkpoints = tmp_path / "checkpoints"
    for seed, kind in enumerate(("cbam", "channel"), start=3):
        make_checkpoint(checkpoints / f"{kind}.safetensors", kind, seed=seed)
    (tmp_path / "my_model.py").write_text(MY_MODEL)
    arguments = ["--model", f"{tmp_path / 'my_model.py'}:build", "--input-size", "32"]
    with (
        dashboard_server(checkpoints, tmp_path / "streamlit.log", how="fmw dashboard", arguments=arguments) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(**CHROMIUM_OPTIONS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(server.url, wait_until="domcontentloaded")
            page.wait_for_function(CHARTS_SHOW, arg=["sample: chelsea", 3], timeout=180_000)
            main = page.locator('[data-testid="stMain"]')
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            chosen = sidebar.split("Models to compare", 1)[1].split("Add models", 1)[0].split()
            assert chosen[:3] == ["channel", "cbam", "build"], chosen  # then the expander's icon
            text = main.inner_text()
            assert "2 (site 1 of 1) · channel · 16 maps of 32×32 · input 32×32 px" in " ".join(text.split())
        finally:
            browser.close()
