"""Cached calls from the dashboard into fmw: loaded checkpoints (``st.cache_resource``), decoded
uploads, sample photos, analyses and model cards (``st.cache_data``), and guarded error reporting.

Analyses are keyed by checkpoint file (path and modification time), image digest, resolution
and device; the pixels themselves ride along unhashed (leading underscore) since the digest names them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import streamlit as st

from fmw.analysis import ImageAnalysis, ModelCard, analyse_image, model_card
from fmw.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from fmw.decode import DecodedImage, DecodeError, decode_image

SAMPLE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
EXPECTED_ERRORS = (DecodeError, CheckpointError, ValueError, RuntimeError, KeyError, OSError)
Result = TypeVar("Result")


def file_version(path: Path) -> float:
    """The modification time, so a checkpoint replaced on disk is loaded again."""
    return path.stat().st_mtime


@st.cache_resource(max_entries=24, show_spinner=False)
def loaded_checkpoint(path: str, version: float, device: str) -> LoadedCheckpoint:
    return load_checkpoint(path, device)


@st.cache_data(max_entries=64, show_spinner=False)
def decoded_upload(digest: str, name: str, _data: bytes) -> DecodedImage:
    return decode_image(_data, name)


def upload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(max_entries=len(SAMPLE_PHOTOS), show_spinner=False)
def sample_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (available offline), as RGB uint8."""
    import skimage.data

    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    return np.ascontiguousarray(getattr(skimage.data, name)())


@st.cache_data(max_entries=512, show_spinner=False)
def image_analysis(
    path: str, version: float, image_digest: str, resolution: int | None, device: str, _rgb: np.ndarray
) -> ImageAnalysis:
    loaded = loaded_checkpoint(path, version, device)
    return analyse_image(loaded, _rgb, resolution, name=Path(path).stem)


@st.cache_data(max_entries=64, show_spinner=False)
def checkpoint_card(path: str, version: float, device: str) -> ModelCard:
    return model_card(loaded_checkpoint(path, version, device), Path(path).stem)


def guarded(label: str, work: Callable[[], Result]) -> Result | None:
    """Run ``work``; on failure show one ``st.error`` that starts with ``label`` and return None,
    so one bad file or checkpoint never stops the rest of the page (and no traceback is shown)."""
    try:
        return work()
    except EXPECTED_ERRORS as error:
        message = str(error)
        st.error(message if message.startswith(label) else f"{label}: {message}")
    except Exception as error:  # noqa: BLE001 - the page must survive anything one item does
        st.error(f"{label}: unexpected {type(error).__name__}: {error}. Please report this with the file.")
    return None
