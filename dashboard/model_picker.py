"""The sidebar section that picks the models to compare: the multiselect over every model offered
(``dashboard.catalog``: checkpoint files, your models, zoo models and uploads, keyed by their unique
keys), adding torchvision and timm models, and uploading checkpoints.

Uploaded models live in ``st.session_state`` and their keys carry a random per-session token, so no
other session can reach them; a failed upload is reported and leaves every other model in place.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Literal

import streamlit as st

from dashboard.catalog import (
    STATE_DICT_SUFFIXES,
    ModelChoice,
    command_line_choices,
    command_line_entries,
    distinct_labels,
    downloads_allowed,
    is_open,
    open_choice,
    open_upload,
    zoo_choice,
)
from dashboard.services import EXPECTED_ERRORS, guarded
from fmw.analysis import ModelHandle
from fmw.device import select_device
from fmw.models import TIMM_MODELS, TORCHVISION_MODELS, timm_available
from fmw.models.zoo import torchvision_models

SELECTION_KEY = "checkpoints"
ZOO_MODELS_KEY = "fmw_zoo_models"
UPLOADED_KEY = "fmw_uploaded_models"
UPLOAD_ERRORS_KEY = "fmw_upload_errors"
ZOO_ERROR_KEY = "fmw_zoo_error"
TOKEN_KEY = "fmw_session_token"
WEIGHT_CHOICES = {"ImageNet weights": "default", "random weights": "random"}
OPENING = {
    "file": "Opening the checkpoint…",
    "command line": "Opening your model…",
    "torchvision": "Opening the torchvision model…",
    "timm": "Building the timm model…",
    "upload": "",
}


def _session_token() -> str:
    return st.session_state.setdefault(TOKEN_KEY, secrets.token_hex(16))


def _select(key: str) -> None:
    """Add the model ``key`` to the models to compare (called from callbacks, before the widget is drawn)."""
    selected = list(st.session_state.get(SELECTION_KEY, []))
    if key not in selected:
        st.session_state[SELECTION_KEY] = [*selected, key]


def uploaded_models() -> Mapping[str, ModelHandle]:
    """This session's uploaded models by key."""
    return {key: model for key, (_, model) in st.session_state.get(UPLOADED_KEY, {}).items()}


def opened_model(choice: ModelChoice, device: str) -> ModelHandle:
    """The loaded model behind ``choice`` on ``device`` (``dashboard.catalog.open_choice``), with a
    spinner while a model is opened for the first time."""
    if is_open(choice, device):
        return open_choice(choice, device, uploaded_models())
    with st.spinner(OPENING[choice.origin]):
        return open_choice(choice, device, uploaded_models())


def _add_zoo_model(origin: Literal["torchvision", "timm"], architecture: str, weights: str) -> None:
    """Open the model once (so a missing download is said now) and list it in this session."""
    choice = zoo_choice(origin, architecture, weights)
    try:
        open_choice(choice, str(select_device(st.session_state.get("device", "auto"))), {})
    except EXPECTED_ERRORS as error:
        st.session_state[ZOO_ERROR_KEY] = (architecture, str(error))
        return
    st.session_state.pop(ZOO_ERROR_KEY, None)
    models: list[ModelChoice] = st.session_state.setdefault(ZOO_MODELS_KEY, [])
    if choice not in models:
        models.append(choice)
    _select(choice.key)


def _add_torchvision(weights: str | None = None) -> None:
    choice = weights or WEIGHT_CHOICES[st.session_state["zoo-weights"]]
    _add_zoo_model("torchvision", st.session_state["zoo-architecture"], choice)


def _add_timm() -> None:
    _add_zoo_model("timm", st.session_state["timm-architecture"], "random")


def _process_uploads() -> None:
    """Open every file in the uploader not opened yet; keep what opened, report what did not."""
    architecture = st.session_state.get("upload-architecture", next(iter(TORCHVISION_MODELS)))
    previous: dict[str, tuple[str, ModelHandle]] = st.session_state.get(UPLOADED_KEY, {})
    kept: dict[str, tuple[str, ModelHandle]] = {}
    errors: list[str] = []
    for upload in st.session_state.get("model-uploads") or []:
        data = upload.getvalue()
        reader = architecture if upload.name.lower().endswith(STATE_DICT_SUFFIXES) else "fmw"
        key = f"upload:{_session_token()}:{hashlib.sha256(data).hexdigest()}:{reader}"
        if key in previous:
            kept[key] = previous[key]
            continue
        try:
            kept[key] = open_upload(data, upload.name, architecture)
        except EXPECTED_ERRORS as error:
            message = str(error)
            errors.append(message if message.startswith(upload.name) else f"{upload.name}: {message}")
            continue
        _select(key)
    st.session_state[UPLOADED_KEY] = kept
    st.session_state[UPLOAD_ERRORS_KEY] = errors


def zoo_architectures() -> dict[str, str]:
    """The torchvision models the sidebar offers, each with a few words: the catalogued classifiers,
    then every detector and segmenter (their task)."""
    others = {
        name: f"{task} (COCO classes)" if task == "detection" else f"{task} (VOC classes)"
        for name, task in torchvision_models().items()
        if task != "classification"
    }
    return {**TORCHVISION_MODELS, **others}


def _zoo_inputs() -> None:
    architectures = zoo_architectures()
    st.selectbox(
        "torchvision model",
        list(architectures),
        key="zoo-architecture",
        format_func=lambda name: name if name in TORCHVISION_MODELS else f"{name} · {architectures[name].split()[0]}",
        help="Classifiers with squeeze-excitation, then every torchvision detector and segmenter (their "
        "MobileNetV3 backbones hold SE gates).\n"
        + "\n".join(f"{name}: {text}" for name, text in TORCHVISION_MODELS.items()),
    )
    st.radio("Weights", list(WEIGHT_CHOICES), key="zoo-weights", horizontal=True)
    st.caption(
        "Published weights are ImageNet's for classifiers and COCO's for detectors and segmenters; random "
        "weights download nothing (backbone included), and their boxes and masks mean nothing."
    )
    st.button("Add torchvision model", key="zoo-add", on_click=_add_torchvision)
    if not downloads_allowed():
        st.caption(
            "ImageNet weights come from the torch cache; set `FMW_ALLOW_DOWNLOAD=1` to let the dashboard "
            "download missing ones."
        )
    failure = st.session_state.get(ZOO_ERROR_KEY)
    if failure is not None:
        architecture, message = failure
        st.error(message)
        st.button(
            f"Add {architecture} with random weights instead",
            key="zoo-add-random",
            on_click=_add_torchvision,
            args=("random",),
        )
    if timm_available():
        st.selectbox(
            "timm model (random weights)",
            list(TIMM_MODELS),
            key="timm-architecture",
            help="\n".join(f"{name}: {recipe.description}" for name, recipe in TIMM_MODELS.items()),
        )
        st.button("Add timm model", key="timm-add", on_click=_add_timm)
    else:
        st.caption("timm is not installed; `pip install timm` adds its SE, ECA and CBAM models here.")


def _upload_inputs() -> None:
    st.file_uploader(
        "Your checkpoints",
        type=["safetensors", "pth", "pt"],
        accept_multiple_files=True,
        key="model-uploads",
        on_change=_process_uploads,
        help="An fmw .safetensors checkpoint, or a torchvision state dict (.pth/.pt, torch.save(model.state_dict())). "
        "Pickled code is refused, never run. Uploaded models stay in this browser session only.",
    )
    st.selectbox(
        "Architecture of .pth/.pt state dicts",
        list(TORCHVISION_MODELS),
        key="upload-architecture",
        on_change=_process_uploads,
    )
    for message in st.session_state.get(UPLOAD_ERRORS_KEY, []):
        st.error(message)


def model_inputs(files: list[ModelChoice]) -> list[ModelChoice]:
    """The sidebar's model section: which models to compare (keyed by their keys, each shown by its
    label, unique among them), adding zoo models, uploading files."""
    uploaded = [ModelChoice(label, key, "upload") for key, (label, _) in st.session_state.get(UPLOADED_KEY, {}).items()]
    entries = guarded("Your models (fmw dashboard --model, fmw-models.toml)", command_line_entries) or ()
    yours = command_line_choices(entries)
    zoo = st.session_state.get(ZOO_MODELS_KEY, [])
    available = {choice.key: choice for choice in distinct_labels([*files, *yours, *zoo, *uploaded])}
    selected = st.session_state.get(SELECTION_KEY)
    if selected is not None and any(key not in available for key in selected):  # e.g. an upload removed
        st.session_state[SELECTION_KEY] = [key for key in selected if key in available]
    default = None if selected is not None else [choice.key for choice in [*files, *yours]]
    chosen = st.multiselect(
        "Models to compare",
        list(available),
        default=default,
        key=SELECTION_KEY,
        format_func=lambda key: available[key].label if key in available else key,
    )
    with st.expander("Add models: torchvision, timm, your own"):
        _zoo_inputs()
        _upload_inputs()
    return [available[key] for key in chosen]
