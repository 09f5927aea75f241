"""Calls from the dashboard into fmw that the views share: decoded uploads and analyses, held by reference
in the byte-bounded ``dashboard.caching.RESULTS`` (never pickled), sample photos, model cards and shipped
statistics (``st.cache_data``: small), a per-session cache for slow results (attributions, statistics),
and guarded error reporting.

Analyses are keyed by the model's cache key (its unique key and file version; uploaded models carry a
session-private key), image digest, resolution and device; the model and the pixels ride along.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import streamlit as st

from dashboard.caching import RESULTS
from dashboard.catalog import file_choices, file_version, open_choice
from dashboard.settings import DEFAULT_SAMPLE, SAMPLE_PHOTOS, sample_digest, sample_rgb
from fmw.analysis import (
    DeviceRun,
    ImageAnalysis,
    ModelCard,
    PreparedImage,
    analyse_images_on_device,
    model_card,
    prepare_image,
)
from fmw.analysis.findings import ShippedStatistics, shipped_statistics, statistics_path
from fmw.errors import FMWError
from fmw.io import DecodedImage, decode_image
from fmw.models import ModelHandle

EXPECTED_ERRORS = (FMWError, ValueError, RuntimeError, KeyError, OSError)
SESSION_CACHE_KEY = "fmw_session_cache"
SESSION_CACHE_ENTRIES = 16
Result = TypeVar("Result")


def decoded_upload(data: bytes, name: str, digest: str | None = None) -> DecodedImage:
    """An upload decoded by ``fmw.io.decode_image`` (which hashes it, once) and kept by its digest;
    ``digest``, known from an earlier run, finds it again without hashing or decoding."""
    found = RESULTS.get(("decoded", digest)) if digest is not None else None
    if found is not None:
        return found
    decoded = decode_image(data, name)
    return RESULTS.put(("decoded", decoded.digest), decoded)


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


def image_analysis(
    model_key: str,
    image_digest: str,
    resolution: int | None,
    device: str,
    load: Callable[[str], ModelHandle],
    rgb: np.ndarray,
    label: str,
) -> DeviceRun[list[ImageAnalysis]]:
    """The analysis on ``device``, falling back to a smaller batch or the CPU on a CUDA
    out-of-memory error; ``load(device)`` opens the model there (the notice says what happened).
    A detector's every box is kept (threshold 0): the views filter them by their own threshold.
    Kept in ``RESULTS`` by reference: callers read it and never change it."""

    def analyse() -> DeviceRun[list[ImageAnalysis]]:
        return analyse_images_on_device(load, [rgb], device, resolution, name=label, batch_size=1, threshold=0.0)

    return RESULTS.get_or_compute(("analysis", model_key, image_digest, resolution, device, label), analyse)


def prepared_image(
    model_key: str, image_digest: str, resolution: int | None, model: ModelHandle, rgb: np.ndarray
) -> PreparedImage:
    """``rgb`` as the model takes it (``fmw.analysis.prepare_image``), prepared once per model, image
    and resolution and kept in ``RESULTS``, so the views that run the model again (Attribution,
    Weighting off) do not prepare it again on every rerun. Callers read it and never change it."""
    key = ("prepared", model_key, image_digest, resolution)
    return RESULTS.get_or_compute(key, lambda: prepare_image(model, rgb, resolution))


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


def preload_files(device: str) -> list[ImageAnalysis]:
    """Load every checkpoint file and analyse the default sample photo with each, into the caches the
    pages read (called by dashboard/app.py before the server accepts a connection, so the first page
    finds them there); a file that fails is left for the page to report."""
    _, choices = file_choices()
    rgb, digest, analyses = sample_photo(DEFAULT_SAMPLE), sample_digest(DEFAULT_SAMPLE), []
    for choice in choices:
        load = partial(open_choice, choice, uploads={})
        try:
            run = image_analysis(choice.cache_key, digest, None, device, load, rgb, choice.label)
        except EXPECTED_ERRORS:
            continue
        analyses += run.value
    return analyses
