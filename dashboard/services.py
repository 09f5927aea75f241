"""Cached calls from the dashboard into fmw: loaded checkpoints and zoo models (``st.cache_resource``),
decoded uploads, sample photos, analyses, model cards and shipped statistics (``st.cache_data``), a
per-session cache for slow results (attributions, statistics), and guarded error reporting.

Analyses are keyed by a model key (checkpoint path and modification time, zoo name and weights, or a
session-private key for uploaded models), image digest, resolution and device; the model and the
pixels ride along unhashed (leading underscore) since the keys name them.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

import numpy as np
import streamlit as st

from dashboard.settings import SAMPLE_PHOTOS, sample_rgb
from fmw.analysis import DeviceRun, ImageAnalysis, ModelCard, analyse_images_on_device, model_card
from fmw.analysis.findings import ShippedStatistics, shipped_statistics, statistics_path
from fmw.errors import FMWError
from fmw.io import DecodedImage, decode_image, load_checkpoint
from fmw.models import ModelHandle, build_timm_model, load_torchvision_model

EXPECTED_ERRORS = (FMWError, ValueError, RuntimeError, KeyError, OSError)
ALLOW_DOWNLOAD_VARIABLE = "FMW_ALLOW_DOWNLOAD"
SESSION_CACHE_KEY = "fmw_session_cache"
SESSION_CACHE_ENTRIES = 16
CACHE_TTL_SECONDS = 3600  # decoded uploads and analyses: an hour, at most their max_entries (see docs/reliability.md)
Result = TypeVar("Result")


def file_version(path: Path) -> float:
    """The modification time, so a checkpoint replaced on disk is loaded again."""
    return path.stat().st_mtime


@st.cache_resource(max_entries=24, show_spinner=False)
def loaded_checkpoint(path: str, version: float, device: str) -> ModelHandle:
    return load_checkpoint(path, device).handle()


def downloads_allowed() -> bool:
    """Whether ImageNet weights missing from the torch cache may be downloaded (``FMW_ALLOW_DOWNLOAD=1``)."""
    return os.environ.get(ALLOW_DOWNLOAD_VARIABLE, "").strip() == "1"


@st.cache_resource(max_entries=8, show_spinner="Opening the torchvision model…")
def torchvision_model(name: str, weights: str, device: str) -> ModelHandle:
    """``weights``: "default" (ImageNet) or "random"."""
    return load_torchvision_model(
        name, "random" if weights == "random" else "default", device, allow_download=downloads_allowed()
    )


@st.cache_resource(max_entries=8, show_spinner="Building the timm model…")
def timm_model(name: str, device: str) -> ModelHandle:
    return build_timm_model(name, device)


@st.cache_data(max_entries=64, ttl=CACHE_TTL_SECONDS, show_spinner=False)
def decoded_upload(digest: str, name: str, _data: bytes) -> DecodedImage:
    return decode_image(_data, name)


def upload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(max_entries=len(SAMPLE_PHOTOS), show_spinner=False)
def sample_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (available offline), as RGB uint8."""
    return sample_rgb(name)


@st.cache_data(max_entries=64, show_spinner=False)
def _shipped(path: str, version: float, statistics_version: float) -> ShippedStatistics:
    return shipped_statistics(Path(path))


def shipped(path: str, version: float) -> ShippedStatistics:
    """The statistics shipped beside the checkpoint at ``path`` (read again when either file changes)."""
    statistics = statistics_path(Path(path))
    return _shipped(path, version, file_version(statistics) if statistics.is_file() else 0.0)


@st.cache_data(max_entries=128, ttl=CACHE_TTL_SECONDS, show_spinner=False)
def image_analysis(
    model_key: str,
    image_digest: str,
    resolution: int | None,
    device: str,
    _load: Callable[[str], ModelHandle],
    _rgb: np.ndarray,
    label: str,
) -> DeviceRun[list[ImageAnalysis]]:
    """The analysis on ``device``, falling back to a smaller batch or the CPU on a CUDA
    out-of-memory error; ``_load(device)`` opens the model there (the notice says what happened).
    A detector's every box is kept (threshold 0): the views filter them by their own threshold."""
    return analyse_images_on_device(_load, [_rgb], device, resolution, name=label, batch_size=1, threshold=0.0)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_card(model_key: str, device: str, _model: ModelHandle, label: str) -> ModelCard:
    return model_card(_model, label)


def session_cached(key: Hashable, compute: Callable[[], Result]) -> Result:
    """``compute()``, remembered in this session only (the last few results), for slow work that
    draws its own progress bar (which ``st.cache_data`` cannot replay) and may involve uploaded models."""
    cache: OrderedDict = st.session_state.setdefault(SESSION_CACHE_KEY, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > SESSION_CACHE_ENTRIES:
        cache.popitem(last=False)
    return value


def guarded(label: str, work: Callable[[], Result]) -> Result | None:
    """Run ``work``; on failure show one ``st.error`` that starts with ``label`` and return None,
    so one bad file or checkpoint never stops the rest of the page (and no traceback is shown)."""
    try:
        return work()
    except EXPECTED_ERRORS as error:
        message = str(error)
        st.error(message if message.startswith(label) else f"{label}: {message}")
    except Exception as error:
        st.error(f"{label}: unexpected {type(error).__name__}: {error}. Please report this with the file.")
    return None
