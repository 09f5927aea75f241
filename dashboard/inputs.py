"""The sidebar (models, device, images, resolution) and what it yields for the views: one
``DashboardContext`` per run, kept in the session so page scripts and fragments can read it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.registry import ModelChoice, file_choices, model_inputs, opened_model
from dashboard.services import SAMPLE_PHOTOS, decoded_upload, guarded, sample_photo, upload_digest
from fmw.analysis import Analysable
from fmw.device import available_devices, select_device

CONTEXT_KEY = "fmw_dashboard_context"
RESOLUTIONS = ("native", 64, 128, 256)
UPLOAD_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF (first frame)"


@dataclass(frozen=True)
class ImageChoice:
    """An image to analyse: its display name, a digest that identifies its content, RGB pixels."""

    name: str
    digest: str
    rgb: np.ndarray


@dataclass(frozen=True)
class DashboardContext:
    checkpoint_directory: Path
    available_checkpoints: tuple[str, ...]
    models: tuple[ModelChoice, ...]
    device: str
    resolution: int | None  # None: each checkpoint's own input size
    images: tuple[ImageChoice, ...]


def _model_inputs() -> tuple[Path, list[ModelChoice], list[ModelChoice]]:
    directory, files = file_choices()
    if not files:
        st.warning(
            f"No checkpoints found in `{directory}`. Train them with `python -m fmw train` (see the README), "
            "or point the `FMW_CHECKPOINT_DIR` environment variable at a folder of fmw `.safetensors` files."
        )
    return directory, files, model_inputs(files)


def _device_input() -> str:
    choice = st.selectbox("Device", ["auto", *available_devices()], key="device")
    device = str(select_device(choice))
    st.caption(f"Running on **{device}**.")
    return device


def _image_inputs() -> list[ImageChoice]:
    uploads = st.file_uploader(
        "Your images", accept_multiple_files=True, key="uploads", help=f"Several at once: {UPLOAD_FORMATS}."
    )
    samples = st.multiselect("Sample photos", SAMPLE_PHOTOS, default=[SAMPLE_PHOTOS[0]], key="samples")
    images = []
    for upload in uploads or []:
        data = upload.getvalue()
        decoded = guarded(
            upload.name, lambda data=data, name=upload.name: decoded_upload(upload_digest(data), name, data)
        )
        if decoded is not None:
            images.append(ImageChoice(name=upload.name, digest=decoded.digest, rgb=decoded.rgb))
    images.extend(
        ImageChoice(name=f"sample: {name}", digest=f"sample:{name}", rgb=sample_photo(name)) for name in samples
    )
    return images


def _resolution_input() -> int | None:
    choice = st.select_slider(
        "Analysis resolution (px)",
        RESOLUTIONS,
        value="native",
        key="resolution",
        help="The models are fully convolutional: larger inputs give finer feature maps.",
    )
    if choice == "native":
        st.caption("Native: each model's own input size (32 px for the shipped models, 224 px for torchvision's).")
        return None
    st.caption(
        f"{choice} px for every model: finer maps for the shipped models, but their recorded accuracy is "
        "for 32 px inputs; zoo models keep their crop and normalisation at this size."
    )
    return int(choice)


def sidebar() -> DashboardContext:
    """Draw the sidebar and store what it says as this session's ``DashboardContext``."""
    with st.sidebar:
        st.header("Inputs")
        directory, available, chosen = _model_inputs()
        device = _device_input()
        images = _image_inputs()
        resolution = _resolution_input()
    context = DashboardContext(
        checkpoint_directory=directory,
        available_checkpoints=tuple(choice.label for choice in available),
        models=tuple(chosen),
        device=device,
        resolution=resolution,
        images=tuple(images),
    )
    st.session_state[CONTEXT_KEY] = context
    return context


def current_context() -> DashboardContext:
    return st.session_state[CONTEXT_KEY]


def choose_image(context: DashboardContext, key: str) -> ImageChoice | None:
    """A select box over the images, the first upload preselected; None, with a note, when there are none."""
    if not context.images:
        st.info(f"Upload an image ({UPLOAD_FORMATS}) or pick a sample photo in the sidebar.")
        return None
    names = [image.name for image in context.images]
    # a new key whenever the images change, so a fresh upload (listed first) is what is shown
    name = st.selectbox("Image", names, key=f"{key}-{zlib.crc32(chr(0).join(names).encode())}")
    return context.images[names.index(name)] if name in names else context.images[0]


def choose_model(context: DashboardContext, key: str, prefer_weighted: bool = False) -> ModelChoice:
    """A select box over the selected models (call after ``require_models``). ``prefer_weighted``
    preselects the first model not known to lack weighting layers (pages about gates)."""
    labels = [choice.label for choice in context.models]
    index = 0
    if prefer_weighted:
        index = next((i for i, choice in enumerate(context.models) if not choice.known_unweighted), 0)
    label = st.selectbox("Checkpoint", labels, index=index, key=key)
    return context.models[labels.index(label) if label in labels else 0]


def open_model(context: DashboardContext, choice: ModelChoice) -> Analysable | None:
    """The loaded model behind ``choice``; None after an ``st.error`` saying why it failed."""
    return guarded(choice.label, lambda: opened_model(choice, context.device))


def require_models(context: DashboardContext) -> bool:
    """True when at least one model is selected; otherwise say why nothing is shown."""
    if context.models:
        return True
    if context.available_checkpoints:
        st.info("Select at least one model in the sidebar.")
    else:
        st.info(
            f"There are no checkpoints in `{context.checkpoint_directory}` yet, so there is nothing to analyse. "
            "Train them (`python -m fmw train`, see the README), set `FMW_CHECKPOINT_DIR`, or add a torchvision "
            "model or your own checkpoint under 'Add models' in the sidebar."
        )
    return False
