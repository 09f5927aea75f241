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
    assert command[5:] == ["--server.port", "8600", "--server.address", "127.0.0.1"]


def test_streamlit_run_binds_localhost_by_the_shipped_config():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
