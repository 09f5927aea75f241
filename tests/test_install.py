"""What makes fmw work from any installed copy: the shipped checkpoints inside the package and
found by name, the default dataset (the development set-up's zip, else torchvision's CIFAR-10 in
fmw's cache folder, fetched on first use, with an offline message), and the package metadata the
wheel is built from."""

from __future__ import annotations

import tomllib
import urllib.error
from pathlib import Path

import pytest

from fmw import settings
from fmw.errors import CheckpointError, DataError
from fmw.io import checkpoint_by_name, load_checkpoint, load_split, shipped_names
from fmw.io.datasets import default_dataset
from fmw.io.model_spec import load_model
from tests.conftest import REPO, make_checkpoint

SHIPPED = ["cbam", "channel", "coord", "eca", "none", "scale", "simam", "spatial"]


def test_the_shipped_checkpoints_are_package_data_and_open_by_name(tmp_path, monkeypatch):
    assert settings.SHIPPED_CHECKPOINTS == REPO / "fmw" / "checkpoints"
    assert shipped_names() == SHIPPED
    monkeypatch.chdir(tmp_path)  # from any directory
    loaded = load_checkpoint("cbam")
    assert loaded.metadata.architecture.weighting == "cbam"
    assert checkpoint_by_name("eca.safetensors") == settings.SHIPPED_CHECKPOINTS / "eca.safetensors"
    assert load_model("spatial").checkpoint.architecture.weighting == "spatial"  # a model SPEC by name
    assert checkpoint_by_name("folder/cbam") is None and checkpoint_by_name("..") is None
    shipped = r"shipped one \(cbam, channel, coord, eca, none, scale, simam, spatial\)"
    with pytest.raises(CheckpointError, match=rf"no such file.*{shipped}"):
        load_checkpoint("cbma")


def test_a_name_in_the_users_checkpoint_folder_comes_before_a_shipped_one(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "cbam.safetensors", "channel")
    monkeypatch.setenv(settings.CHECKPOINT_DIRECTORY_VARIABLE, str(tmp_path))
    assert load_checkpoint("cbam").metadata.architecture.weighting == "channel"
    assert load_checkpoint("eca").metadata.architecture.weighting == "eca", "the shipped ones stay reachable"


def test_the_wheel_declares_its_package_data_and_licence():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]
    assert "checkpoints/*.safetensors" in data["fmw"] and "checkpoints/stats/*.json" in data["fmw"]
    assert data["dashboard"] == ["streamlit.toml", "figure_canvas.js"], "the canvas figures' drawing travels too"
    assert project["project"]["license"] == "Apache-2.0" and (REPO / "LICENSE").is_file()
    for kind in SHIPPED:
        assert (settings.SHIPPED_CHECKPOINTS / "stats" / f"{kind}.json").is_file()


def test_the_lock_pins_every_tool_and_the_pinned_torch():
    pins = {}
    for line in (REPO / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            pins[name] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for tool in ("pytest", "hypothesis", "playwright", "ruff", "mypy", "streamlit", "nbclient", "build", "twine"):
        assert pins.get(tool), f"{tool} is not pinned in requirements-lock.txt"
    assert "-c requirements-lock.txt" in (REPO / "requirements.txt").read_text().splitlines()


def test_the_default_dataset_is_the_development_zip_else_cifar10_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.DATA_VARIABLE, raising=False)
    monkeypatch.setenv(settings.CACHE_VARIABLE, str(tmp_path / "cache"))
    development = settings.development_data_path()
    if development is not None:  # this checkout has ../shared/data: the development set-up
        assert settings.default_data_path() == development
        assert default_dataset("PATH") == (str(development), False)
    monkeypatch.setattr(settings, "SOURCE_TREE", None)  # as from an installed wheel
    assert settings.development_data_path() is None
    assert str(settings.default_data_path()) == f"torchvision:{tmp_path / 'cache' / 'cifar10'}"
    assert default_dataset("PATH") == (f"torchvision:{tmp_path / 'cache' / 'cifar10'}", True), "fetched on first use"
    monkeypatch.delenv(settings.CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_directory() == tmp_path / "xdg" / "fmw"
    monkeypatch.setenv(settings.DATA_VARIABLE, str(tmp_path / "mine.zip"))
    assert settings.default_data_path() == tmp_path / "mine.zip"


def test_offline_the_default_download_fails_with_what_to_do(tmp_path, monkeypatch):
    """torchvision's downloader raises URLError (an OSError) without a network; no network is used
    here: the download function is replaced by one that fails the way an offline machine does."""
    import torchvision.datasets.utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    monkeypatch.delenv(settings.DATA_VARIABLE, raising=False)
    monkeypatch.setenv(settings.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setattr(settings, "SOURCE_TREE", None)
    with pytest.raises(DataError, match=r"could not be downloaded to .*needs internet.*--data PATH.*FMW_DATA"):
        load_split(None, "test")
    assert not any(Path(tmp_path).rglob("*.tar.gz")), "nothing half-downloaded is left as if complete"
