"""The sidebar (models, device, images, resolution) and what it yields for the views: one
``DashboardContext`` per run, kept in the session so page scripts and fragments can read it; the
current image, shared by every view (a fresh upload becomes it at once); the model each view opens on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.catalog import ModelChoice, file_choices
from dashboard.model_picker import model_inputs, opened_model
from dashboard.services import decoded_upload, guarded, sample_photo
from dashboard.settings import DEFAULT_SAMPLE, SAMPLE_PHOTOS, sample_digest
from fmw.analysis import ModelHandle
from fmw.device import available_devices, select_device

CONTEXT_KEY = "fmw_dashboard_context"
CURRENT_IMAGE_KEY = "fmw_current_image"  # the name of the image every view shows
SEEN_UPLOADS_KEY = "fmw_seen_uploads"  # digests of the uploads already seen, to tell a fresh one
UPLOAD_DIGESTS_KEY = "fmw_upload_digests"  # each uploaded file's digest, so it is hashed once
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
    current_image: str = ""  # the name of the image the views show ("" when there are none)


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
    samples = st.multiselect("Sample photos", SAMPLE_PHOTOS, default=[DEFAULT_SAMPLE], key="samples")
    images = []
    digests: dict[str, str] = st.session_state.setdefault(UPLOAD_DIGESTS_KEY, {})
    for upload in uploads or []:
        known = digests.get(upload.file_id)
        decoded = guarded(upload.name, partial(decoded_upload, upload.getvalue(), upload.name, known))
        if decoded is not None:
            digests[upload.file_id] = decoded.digest
            images.append(ImageChoice(name=upload.name, digest=decoded.digest, rgb=decoded.rgb))
    _follow_fresh_uploads(images)
    images.extend(sample_choice(name) for name in samples)
    return images


def sample_label(name: str) -> str:
    """How the views name the sample photo ``name`` (one of ``SAMPLE_PHOTOS``)."""
    return f"sample: {name}"


def sample_choice(name: str) -> ImageChoice:
    """The sample photo ``name`` as an image to analyse."""
    return ImageChoice(name=sample_label(name), digest=sample_digest(name), rgb=sample_photo(name))


def _follow_fresh_uploads(uploads: list[ImageChoice]) -> None:
    """Make the newest upload not seen before the current image, the moment it arrives."""
    seen = st.session_state.get(SEEN_UPLOADS_KEY, set())
    fresh = [image for image in uploads if image.digest not in seen]
    if fresh:
        st.session_state[CURRENT_IMAGE_KEY] = fresh[-1].name
    st.session_state[SEEN_UPLOADS_KEY] = {image.digest for image in uploads}


def _current_image(images: list[ImageChoice]) -> str:
    """The current image's name: the one chosen last (in any view) or uploaded last, else the first."""
    names = [image.name for image in images]
    current = st.session_state.get(CURRENT_IMAGE_KEY)
    if current not in names:
        current = names[0] if names else ""
        st.session_state[CURRENT_IMAGE_KEY] = current
    return current


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
    return int(str(choice))  # one of RESOLUTIONS' sizes


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
        current_image=_current_image(images),
    )
    st.session_state[CONTEXT_KEY] = context
    return context


def current_context() -> DashboardContext:
    return st.session_state[CONTEXT_KEY]


def _remember_image(key: str) -> None:
    st.session_state[CURRENT_IMAGE_KEY] = st.session_state[key]


def choose_image(context: DashboardContext, key: str) -> ImageChoice | None:
    """A select box over the images showing the current image (shared by every view: choosing one here
    chooses it everywhere); None, with a note, when there are none."""
    if not context.images:
        st.info(f"Upload an image ({UPLOAD_FORMATS}) or pick a sample photo in the sidebar.")
        return None
    names = [image.name for image in context.images]
    current = context.current_image if context.current_image in names else names[0]
    st.session_state[key] = current  # the widget follows the shared choice (set before it is drawn)
    name = st.selectbox("Image", names, key=key, on_change=_remember_image, args=(key,))
    return context.images[names.index(name) if name in names else names.index(current)]


def choose_model(
    context: DashboardContext, key: str, preferred: Sequence[str] = (), first: str | None = None
) -> ModelChoice:
    """A select box over the selected models (call after ``require_models``). The model whose key is
    ``first`` is preselected, else the first model whose weighting kind comes earliest in
    ``preferred``, else the first not known to lack weighting layers, else the first."""
    labels = [choice.label for choice in context.models]
    keyed = [i for i, choice in enumerate(context.models) if choice.key == first]
    ranked = keyed + [
        next((i for i, choice in enumerate(context.models) if choice.weighting == kind), None) for kind in preferred
    ]
    weighted = next((i for i, choice in enumerate(context.models) if not choice.known_unweighted), 0)
    index = next((i for i in ranked if i is not None), weighted)
    if key in st.session_state:  # chosen before, or set by another view (the Compare view's link)
        label = st.selectbox("Checkpoint", labels, key=key)
    else:
        label = st.selectbox("Checkpoint", labels, index=index, key=key)
    return context.models[labels.index(label) if label in labels else index]


def open_model(context: DashboardContext, choice: ModelChoice) -> ModelHandle | None:
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
