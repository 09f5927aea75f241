"""The dashboard server's start-up keeps reruns free of long garbage collections: Streamlit's collection
after every script run is off in the dashboard's settings, and the start-up freezes what it loaded
(``dashboard/app.py``), so that a full collection scans only what came after."""

from __future__ import annotations

import asyncio
import gc
import tomllib

from tests.dashboard_helpers import REPO


def test_the_dashboard_settings_turn_off_streamlits_collection_after_every_run() -> None:
    settings = tomllib.loads((REPO / "dashboard" / "streamlit.toml").read_text())
    assert settings["runner"]["postScriptGC"] is False


def test_start_up_warms_up_then_freezes_what_it_loaded(monkeypatch) -> None:
    from dashboard import app

    steps: list[str] = []
    monkeypatch.setattr(app, "warm_up", lambda: steps.append("warm up"))
    gc.unfreeze()
    loaded = [[index] for index in range(3)]  # lists: objects the collector tracks, and scans until frozen
    assert {id(item) for item in loaded} <= {id(item) for item in gc.get_objects()}

    async def start() -> None:
        async with app.warmed_up(app.app):
            steps.append(f"serving, {gc.get_freeze_count()} objects frozen")

    try:
        asyncio.run(start())
        assert steps[0] == "warm up" and steps[1].startswith("serving"), steps
        assert gc.get_freeze_count() > 0
        scanned = {id(item) for item in gc.get_objects()}
        assert not any(id(item) in scanned for item in loaded), "what was loaded before serving is out of the scans"
    finally:
        gc.unfreeze()
