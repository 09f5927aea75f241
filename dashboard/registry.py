"""The models a session can analyse and the sidebar section that picks them: checkpoint files, zoo
models added from the sidebar (torchvision, timm) and uploaded checkpoints, kept in this session only.

Uploaded models live in ``st.session_state`` and their cache keys carry a random per-session token,
so no other session can reach them; a failed upload is reported and leaves every other model in place.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import streamlit as st
from safetensors import safe_open

from dashboard.services import (
    EXPECTED_ERRORS,
    downloads_allowed,
    file_version,
    guarded,
    image_analysis,
    loaded_checkpoint,
    sample_photo,
    timm_model,
    torchvision_model,
)
from dashboard.settings import DEFAULT_SAMPLE, sample_digest
from fmw.analysis import ImageAnalysis, ModelHandle, list_checkpoints
from fmw.device import select_device
from fmw.io import load_checkpoint
from fmw.io.model_spec import ModelEntry, configured_models, load_model, spec_name
from fmw.models import TIMM_MODELS, TORCHVISION_MODELS, load_state_dict_upload, timm_available
from fmw.models.zoo import torchvision_models
from fmw.settings import checkpoint_directory

SELECTION_KEY = "checkpoints"
ZOO_MODELS_KEY = "fmw_zoo_models"
UPLOADED_KEY = "fmw_uploaded_models"
UPLOAD_ERRORS_KEY = "fmw_upload_errors"
ZOO_ERROR_KEY = "fmw_zoo_error"
TOKEN_KEY = "fmw_session_token"
WEIGHT_CHOICES = {"ImageNet weights": "default", "random weights": "random"}
STATE_DICT_SUFFIXES = (".pth", ".pt")
Origin = Literal["file", "command line", "torchvision", "timm", "upload"]


@dataclass(frozen=True)
class ModelChoice:
    """A model the views can analyse. ``label`` is shown everywhere (random weights say so);
    ``key`` identifies its weights for caching (file and modification time, zoo name and weights,
    or a session-private upload key)."""

    label: str
    key: str
    origin: Origin
    path: str = ""
    version: float = 0.0
    architecture: str = ""
    weights: str = ""
    weighting: str = ""  # checkpoint files: the kind their header names ("" where unknown)
    weighting_off_drop: float | None = None  # checkpoint files: test top-1 lost with weighting off, if recorded

    @property
    def known_unweighted(self) -> bool:
        """True only for a checkpoint whose header says it has no weighting layer."""
        return self.weighting == "none"


def _session_token() -> str:
    return st.session_state.setdefault(TOKEN_KEY, secrets.token_hex(16))


def _select(label: str) -> None:
    """Add ``label`` to the models to compare (called from callbacks, before the widget is drawn)."""
    selected = list(st.session_state.get(SELECTION_KEY, []))
    if label not in selected:
        st.session_state[SELECTION_KEY] = [*selected, label]


def _zoo_choice(origin: Origin, architecture: str, weights: str) -> ModelChoice:
    random = weights == "random"
    label = f"{architecture} (random weights)" if random else architecture
    return ModelChoice(label, f"{origin}:{architecture}:{weights}", origin, architecture=architecture, weights=weights)


def _add_zoo_model(origin: Origin, architecture: str, weights: str) -> None:
    """Open the model once (so a missing download is said now) and list it in this session."""
    choice = _zoo_choice(origin, architecture, weights)
    try:
        opened_model(choice, str(select_device(st.session_state.get("device", "auto"))))
    except EXPECTED_ERRORS as error:
        st.session_state[ZOO_ERROR_KEY] = (architecture, str(error))
        return
    st.session_state.pop(ZOO_ERROR_KEY, None)
    models: list[ModelChoice] = st.session_state.setdefault(ZOO_MODELS_KEY, [])
    if choice not in models:
        models.append(choice)
    _select(choice.label)


def _add_torchvision(weights: str | None = None) -> None:
    choice = weights or WEIGHT_CHOICES[st.session_state["zoo-weights"]]
    _add_zoo_model("torchvision", st.session_state["zoo-architecture"], choice)


def _add_timm() -> None:
    _add_zoo_model("timm", st.session_state["timm-architecture"], "random")


def _open_upload(data: bytes, filename: str, architecture: str) -> tuple[str, ModelHandle]:
    """An fmw ``.safetensors`` checkpoint, or a torchvision state dict (``.pth``/``.pt``) for
    ``architecture``, with its label in the sidebar; both readers refuse anything that could run code."""
    if filename.lower().endswith(STATE_DICT_SUFFIXES):
        model = load_state_dict_upload(data, architecture, filename)  # its name says the file
        return model.label, model
    model = load_checkpoint(data, name=filename).handle()
    return f"{model.label} (uploaded)", model


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
            kept[key] = _open_upload(data, upload.name, architecture)
        except EXPECTED_ERRORS as error:
            message = str(error)
            errors.append(message if message.startswith(upload.name) else f"{upload.name}: {message}")
            continue
        _select(kept[key][0])
    st.session_state[UPLOADED_KEY] = kept
    st.session_state[UPLOAD_ERRORS_KEY] = errors


@functools.cache
def command_line_entries() -> tuple[ModelEntry, ...]:
    """The models the user gave ``fmw dashboard --model`` or listed in ``fmw-models.toml``, read
    once per server: their code is imported only because the user named it on this machine."""
    return tuple(configured_models())


def command_line_choices() -> list[ModelChoice]:
    """One choice per command-line model; a malformed list is one error on the page."""
    entries = guarded("Your models (fmw dashboard --model, fmw-models.toml)", command_line_entries) or ()
    return [
        ModelChoice(spec_name(entry.spec), f"command line:{index}:{entry.spec}", "command line", path=str(index))
        for index, entry in enumerate(entries)
    ]


@st.cache_resource(max_entries=16, show_spinner="Opening your model…")
def command_line_model(index: int, device: str) -> ModelHandle:
    entry = command_line_entries()[index]
    return load_model(entry.spec, dataclasses.replace(entry.options, device=device))


def opened_model(choice: ModelChoice, device: str) -> ModelHandle:
    """The loaded model behind ``choice`` on ``device``: cached for files, command-line and zoo
    models, from this session's state for uploads."""
    if choice.origin == "file":
        return loaded_checkpoint(choice.path, choice.version, device)
    if choice.origin == "command line":
        return command_line_model(int(choice.path), device)
    if choice.origin == "torchvision":
        return torchvision_model(choice.architecture, choice.weights, device)
    if choice.origin == "timm":
        return timm_model(choice.architecture, device)
    uploaded = st.session_state.get(UPLOADED_KEY, {})
    if choice.key not in uploaded:
        raise KeyError(f"{choice.label} is no longer uploaded; upload the file again in the sidebar")
    model = uploaded[choice.key][1]
    model.model.to(device)  # private to this session, so moving it in place affects no one else
    return model


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


@st.cache_data(max_entries=512, show_spinner=False)
def header_metadata(path: str, version: float) -> dict[str, str]:
    """The metadata of a ``.safetensors`` header, read without loading any tensor ({} when the header
    is unreadable: the file's own load reports what is wrong with it)."""
    try:
        with safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # hints for preselection only; never let a bad file break the listing
        return {}
    return {key: value for key, value in metadata.items() if isinstance(value, str)}


def header_weighting(path: str, version: float) -> str:
    """The weighting kind a checkpoint's header names ("" when unreadable or absent)."""
    return header_metadata(path, version).get("weighting", "")


def header_weighting_off_drop(path: str, version: float) -> float | None:
    """Test top-1 with weighting on minus with it off, as a checkpoint's header records them (None
    when it records no such pair)."""
    try:
        metrics = json.loads(header_metadata(path, version).get("metrics", "{}"))
        on, off = metrics["test_top1"], metrics["test_top1_weighting_off"]
    except (ValueError, KeyError, TypeError):
        return None
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (on, off))
    return float(on) - float(off) if numbers else None


def file_choices() -> tuple[Path, list[ModelChoice]]:
    """The checkpoint folder and one choice per ``.safetensors`` file in it."""
    directory = checkpoint_directory()
    choices = []
    for path in list_checkpoints(directory):
        version = file_version(path)
        choices.append(
            ModelChoice(
                path.stem,
                f"file:{path}:{version}",
                "file",
                str(path),
                version,
                weighting=header_weighting(str(path), version),
                weighting_off_drop=header_weighting_off_drop(str(path), version),
            )
        )
    return directory, choices


def preload_files(device: str) -> list[ImageAnalysis]:
    """Load every checkpoint file and analyse the default sample photo with each, into the caches the
    pages read (called by dashboard/app.py before the server accepts a connection, so the first page
    finds them there); a file that fails is left for the page to report."""
    _, choices = file_choices()
    rgb, digest, analyses = sample_photo(DEFAULT_SAMPLE), sample_digest(DEFAULT_SAMPLE), []
    for choice in choices:
        try:
            run = image_analysis(choice.key, digest, None, device, partial(opened_model, choice), rgb, choice.label)
        except EXPECTED_ERRORS:
            continue
        analyses += run.value
    return analyses


def model_inputs(files: list[ModelChoice]) -> list[ModelChoice]:
    """The sidebar's model section: which models to compare, adding zoo models, uploading files."""
    uploaded = [ModelChoice(label, key, "upload") for key, (label, _) in st.session_state.get(UPLOADED_KEY, {}).items()]
    yours = command_line_choices()
    zoo = st.session_state.get(ZOO_MODELS_KEY, [])
    available = {choice.label: choice for choice in [*files, *yours, *zoo, *uploaded]}
    selected = st.session_state.get(SELECTION_KEY)
    if selected is not None and any(label not in available for label in selected):  # e.g. an upload removed
        st.session_state[SELECTION_KEY] = [label for label in selected if label in available]
    default = None if selected is not None else [choice.label for choice in [*files, *yours]]
    chosen = st.multiselect("Models to compare", list(available), default=default, key=SELECTION_KEY)
    with st.expander("Add models: torchvision, timm, your own"):
        _zoo_inputs()
        _upload_inputs()
    return [available[label] for label in chosen]
