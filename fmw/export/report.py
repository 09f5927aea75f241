"""The HTML report of images and models: per image and model, predictions, the sites' maps and
gates, and an input attribution, in one self-contained page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fmw.analysis import ImageAnalysis, ModelHandle, analyse_image, prepare_image
from fmw.analysis.attribution import attribute_input, attribution_method
from fmw.errors import DecodeError
from fmw.export.files import Section
from fmw.figures import attribution_overlay_figure, predictions_figure, site_column_figure
from fmw.figures.tasks import detection_figure, segmentation_figure
from fmw.io import DecodedImage, decode_image
from fmw.models.tasks import Detection, Segmentation
from fmw.sites import NOTHING_FOUND

NO_ATTRIBUTION = "none"


def checkpoint_sections(
    name: str,
    loaded: ModelHandle,
    image: DecodedImage,
    *,
    attribution: str = "integrated_gradients",
    n_steps: int = 32,
    resolution: int | None = None,
) -> list[Section]:
    """One model (an fmw checkpoint or any other) on one image: a section with the top-5 and the
    attribution overlay (for the
    predicted class; ``attribution="none"`` leaves it out), then one section per weighting site
    with the Compare view's figure: its maps before and after and its gate(s)."""
    analysis = analyse_image(loaded, image.rgb, resolution=resolution, name=name)
    if not analysis.predictions:
        return _task_sections(name, loaded, analysis, attribution, image.rgb)
    top = analysis.predictions[0]
    figures = [
        predictions_figure(
            [p.class_name for p in analysis.predictions], [p.probability for p in analysis.predictions], title="top-5"
        )
    ]
    if attribution != NO_ATTRIBUTION:
        inputs = prepare_image(loaded, image.rgb, resolution).inputs
        result = attribute_input(loaded.model, inputs, attribution, target=top.index, n_steps=n_steps)
        title = f"{attribution_method(attribution).title} for {top.class_name}"
        figures.append(attribution_overlay_figure(analysis.crop, result.maps[0], title=title))
    height, width = analysis.resolution
    sections = [
        Section(
            f"{name}: {top.class_name} ({top.probability:.1%})",
            figures,
            notes=[f"{_weighting(loaded, analysis)}, analysed at {height}x{width} px"],
            level=3,
        )
    ]
    return sections + _site_sections(name, analysis)


def _task_sections(
    name: str, loaded: ModelHandle, analysis: ImageAnalysis, attribution: str, rgb: np.ndarray
) -> list[Section]:
    """A detector, segmenter or other model: what it predicted, drawn and in words, as its task
    reads the output (the boxes over the analysis's threshold on the user's image ``rgb``, the mask over the
    image the model saw with each class's share of the pixels, the output's structure), then its
    sites; the input attribution is drawn for classifiers only."""
    outcome = analysis.task_prediction
    assert outcome is not None
    figures = []
    if isinstance(outcome, Detection):
        figures.append(detection_figure(rgb, outcome, title=f"boxes scoring {outcome.threshold:.0%} or more"))
    elif isinstance(outcome, Segmentation):
        figures.append(segmentation_figure(analysis.crop, outcome, title="predicted classes over the image it saw"))
    lines = outcome.lines()
    height, width = analysis.resolution
    notes = [f"{_weighting(loaded, analysis)}, analysed at {height}x{width} px", *lines[:20]]
    if attribution != NO_ATTRIBUTION:
        notes.append(
            f"no input attribution: the report attributes a classifier's class; for a {outcome.task} "
            "model, use fmw.analysis.attribution with a score from fmw.models.tasks.task_score"
        )
    heading = Section(f"{name} ({outcome.task}): {lines[0]}", figures, notes=notes, level=3)
    return [heading, *_site_sections(name, analysis)]


def _site_sections(name: str, analysis: ImageAnalysis) -> list[Section]:
    """One section per weighting site: the Compare view's figure of its maps and gates."""
    sections = []
    if not analysis.sites:
        sections.append(Section(f"{name}: no weighting site", notes=[NOTHING_FOUND], level=4))
    for site in analysis.sites:
        figure = site_column_figure(site.before, site.after, site.stages, title=f"{site.name}: before, after, gates")
        _, map_height, map_width = site.before.shape
        note = f"{site.kind}, {site.channels} maps of {map_height}x{map_width}"
        if site.stages:
            note += "; stages: " + ", ".join(f"{stage.name} ({stage.layout})" for stage in site.stages)
        else:
            note += "; no gate: the site passes its input through unchanged"
        sections.append(Section(f"{name} · {site.name}", [figure], notes=[note, *site.frame_notes], level=4))
    return sections


def _weighting(loaded: ModelHandle, analysis: ImageAnalysis) -> str:
    if loaded.weighting is not None:
        return f"{loaded.weighting} weighting"
    kinds = sorted({site.kind for site in analysis.sites})
    return f"{loaded.source}; weighting found: {', '.join(kinds) or 'none'}"


def report_sections(
    images: Sequence[tuple[str, bytes]],
    checkpoints: Mapping[str, ModelHandle],
    **options: Any,
) -> tuple[list[Section], list[str]]:
    """Sections for every (name, file bytes) image and every named checkpoint, and the error
    messages of what failed (each also appears in its image's section). ``options`` go to
    ``checkpoint_sections``."""
    sections: list[Section] = []
    errors: list[str] = []
    for image_name, data in images:
        heading = Section(f"Image {image_name}")
        sections.append(heading)
        try:
            image = decode_image(data, image_name)
        except DecodeError as error:
            heading.errors.append(str(error))
            errors.append(str(error))
            continue
        width, height = image.source_size
        heading.notes.append(f"{image.source_format}, {width}x{height} px, sha256 {image.digest[:12]}")
        for name, loaded in checkpoints.items():
            try:
                sections += checkpoint_sections(name, loaded, image, **options)
            except (ValueError, RuntimeError) as error:
                message = f"{image_name} with {name}: {error}"
                heading.errors.append(message)
                errors.append(message)
    return sections, errors
