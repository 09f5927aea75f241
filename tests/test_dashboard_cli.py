"""`fmw dashboard` and `streamlit run dashboard/app.py` serve this machine only unless told otherwise:
the command `fmw dashboard` builds, and the Streamlit setting the repository ships."""

from __future__ import annotations

import sys
import tomllib

from fmw.cli.dashboard import streamlit_command, with_local_address
from tests.conftest import REPO


def test_fmw_dashboard_binds_localhost_unless_an_address_is_given():
    assert with_local_address([]) == ["--server.address", "127.0.0.1"]
    assert with_local_address(["--server.port", "8600"]) == ["--server.port", "8600", "--server.address", "127.0.0.1"]
    assert with_local_address(["--server.address", "0.0.0.0"]) == ["--server.address", "0.0.0.0"]
    assert with_local_address(["--server.address=0.0.0.0"]) == ["--server.address=0.0.0.0"]
    command = streamlit_command(["--server.port", "8600"])
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert command[4] == str(REPO / "dashboard" / "app.py")
    assert command[-4:] == ["--server.port", "8600", "--server.address", "127.0.0.1"]


def test_fmw_dashboard_passes_the_packaged_settings_unless_the_user_sets_them():
    """An installed wheel has no .streamlit/ folder in the user's working directory: ``fmw dashboard``
    passes dashboard/streamlit.toml (package data) as options, so they hold from anywhere."""
    settings = tomllib.loads((REPO / "dashboard" / "streamlit.toml").read_text())
    command = streamlit_command(["--server.maxUploadSize", "50"])
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--client.showErrorDetails"] == settings["client"]["showErrorDetails"] == "none"
    assert options["--browser.gatherUsageStats"] == "false" and options["--server.headless"] == "true"
    assert options["--server.maxUploadSize"] == "50", "the user's own value wins"
    assert command.count("--server.maxUploadSize") == 1 and command.count("--server.address") == 1


def test_streamlit_run_binds_localhost_by_the_shipped_config():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert (REPO / ".streamlit" / "config.toml").resolve() == REPO / "dashboard" / "streamlit.toml", "one file"
