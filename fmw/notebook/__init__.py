"""Notebooks: ``fmw.inspect(model, images)`` probes any model on images given as tensors, PIL images,
arrays or file paths, and returns an ``Inspection`` that shows itself in Jupyter (its sites, the
predictions and the before / gate / after figure of the first gated site) and whose methods return
plotly figures of the other views, for the user to change further."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from torch import nn

from fmw.analysis import (
    Prediction,
    SiteSummary,
    channel_order,
    prepare_image,
    summarise_site,
)
from fmw.analysis.ablation import compare_task_weighting_off, compare_weighting_off
from fmw.errors import FMWError
from fmw.figures import explorer_grids_figure, site_column_figure, stage_figure, stage_title, weighting_off_figure
from fmw.figures.tasks import detection_figure, segmentation_figure, task_weighting_off_figure
from fmw.io import LoadedCheckpoint, decode_image
from fmw.io.model_spec import ModelOptions, load_model
from fmw.models.handle import ModelHandle
from fmw.models.tasks import TASKS, Detection, Segmentation, most_likely, postprocessed
from fmw.models.tasks import Prediction as TaskPrediction
from fmw.models.user import IMAGENET_MEAN, IMAGENET_STD, UserModelOptions, wrap_module
from fmw.models.zoo import seen_images
from fmw.sites import NOTHING_FOUND, ProbeResult, SiteRecord, probe

__all__ = ["Inspection", "handle_of", "inspect"]

ImageLike = torch.Tensor | np.ndarray | Image.Image | str | Path


def _rgb(image: np.ndarray | Image.Image | str | Path | torch.Tensor) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB: files are decoded safely (``fmw.io.decode_image``)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        return decode_image(path.read_bytes(), path.name).rgb
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):  # uint8 (3, H, W) pixels
        image = image.permute(1, 2, 0).cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise FMWError(f"an image array must be (H, W, 3) RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def _as_images(images: ImageLike | Sequence[ImageLike]) -> list[Any]:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _inputs(model: ModelHandle, images: list[Any]) -> tuple[torch.Tensor | list[torch.Tensor], list[np.ndarray] | None]:
    """The model's input and the crops it saw; float tensors are taken as already prepared. A
    detector (whole-image preprocessing) takes a list of images of any sizes, each as it is, and its
    crops are the images as its own transform resized and padded them."""
    whole = model.preprocessing.whole_image
    if all(isinstance(image, torch.Tensor) and image.is_floating_point() for image in images):
        return (list(images) if whole else torch.stack(images)), None
    prepared = [prepare_image(model, _rgb(image)) for image in images]
    if not whole:
        return torch.cat([p.inputs for p in prepared]), [p.crop for p in prepared]
    pixels = [p.inputs[0] for p in prepared]
    seen = seen_images(model.model, pixels)  # padded to the batch's size, as the model sees them together
    return pixels, [s.pixels for s in seen] if seen is not None else [p.crop for p in prepared]


def handle_of(
    model: nn.Module | ModelHandle | LoadedCheckpoint | str,
    input_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    class_names: Sequence[str] | None,
    random_weights: bool,
    task: str | None = None,
    postprocess: str | None = None,
) -> ModelHandle:
    """Whatever a notebook user passed as a model, as a ``ModelHandle``: a SPEC opened by
    ``load_model``, a checkpoint read by ``load_checkpoint`` converted, a plain module wrapped with
    the options given (a handle is taken as it is)."""
    if isinstance(model, str):
        options = ModelOptions(
            random_weights=random_weights,
            input_size=input_size,
            mean=tuple(mean) if mean else None,
            std=tuple(std) if std else None,
            task=task,
            postprocess=postprocess,
        )
        return load_model(model, options)
    if isinstance(model, ModelHandle):
        return model
    if isinstance(model, LoadedCheckpoint):
        return model.handle()
    if not isinstance(model, nn.Module):
        raise FMWError(
            f"model must be an nn.Module, a ModelHandle, an fmw checkpoint or a SPEC, got {type(model).__name__}"
        )
    user = UserModelOptions(
        input_size=input_size or 224,
        mean=tuple(mean) if mean else IMAGENET_MEAN,
        std=tuple(std) if std else IMAGENET_STD,
        class_names=tuple(class_names) if class_names else None,
        task=task,
        postprocess=postprocess,
    )
    return wrap_module(model, type(model).__name__, f"{type(model).__name__} given in Python", user)


@dataclass
class Inspection:
    """A model probed on a batch of images. ``result`` holds the raw records (tensors); the methods
    return numpy summaries and plotly figures; in Jupyter it shows itself."""

    model: ModelHandle
    name: str
    inputs: torch.Tensor | list[torch.Tensor]
    result: ProbeResult
    crops: list[np.ndarray] | None

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    @property
    def sites(self) -> list[SiteRecord]:
        return self.result.sites

    @property
    def task(self) -> str:
        """What the output means (``fmw.models.tasks.TASKS``): an fmw checkpoint classifies."""
        return self.model.task

    @property
    def output(self) -> Any:
        """The model's output as the task reads it: after the model's postprocess function, if any."""
        return postprocessed(self.model.postprocess, self.result.output)

    def task_predictions(self, image: int = 0, k: int = 5, threshold: float = 0.5) -> TaskPrediction:
        """Image ``image``'s predictions as its task makes them: top-k classes, a mask and each
        class's share, boxes scored ``threshold`` or more, or the output's structure."""
        return TASKS[self.task].predictions(self.output, image, self.class_names, k, threshold)

    @property
    def site_names(self) -> list[str]:
        return self.result.names

    def predictions(self, image: int = 0, k: int = 5, threshold: float = 0.5) -> list[Prediction] | TaskPrediction:
        """A classifier's top-``k`` classes of image ``image``; for any other task its prediction as
        ``task_predictions`` makes it (a mask and shares, boxes scoring ``threshold`` or more, the
        output's structure)."""
        if self.task != "classification":
            return self.task_predictions(image, k, threshold)
        probabilities = self.result.logits[image].float().softmax(0)
        values, indices = most_likely(probabilities, k)
        return [Prediction(int(i), self.class_names[int(i)], float(p)) for p, i in zip(values, indices, strict=True)]

    def prediction_figure(self, image: int = 0, threshold: float = 0.5) -> go.Figure:
        """A detector's boxes scoring ``threshold`` or more on image ``image`` as it was given, or a
        segmenter's mask over the crop it saw with each class's share; other tasks have no picture."""
        outcome = self.task_predictions(image, threshold=threshold)
        if isinstance(outcome, Detection):
            given = self.inputs[image]
            rgb = (given.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            return detection_figure(rgb, outcome, title=f"{self.name}: boxes ≥ {threshold:.0%}")
        if isinstance(outcome, Segmentation) and self.crops is not None:
            return segmentation_figure(self.crops[image], outcome, title=f"{self.name}: predicted classes")
        raise FMWError(
            f"{self.name} is a {self.task} model: only detection and segmentation (with images given) have a "
            "picture of their predictions; see .task_predictions() for its output"
        )

    def _site_name(self, site: str | None) -> str:
        if site is not None:
            self.result.site(site)  # KeyError listing the sites when unknown
            return site
        gated = [record.name for record in self.sites if record.gates]
        if not gated:
            raise FMWError(NOTHING_FOUND)
        return gated[0]

    def summary(self, site: str | None = None, image: int = 0) -> SiteSummary:
        """One site on one image as numpy: maps before and after, gates, channel energies."""
        return summarise_site(self.result.site(self._site_name(site)), image)

    def figure(self, site: str | None = None, image: int = 0) -> go.Figure:
        """The site's maps before and after and every stage as its layout draws it (default: the
        first site with a gate); frame notes under the title."""
        s = self.summary(site, image)
        return site_column_figure(s.before, s.after, s.stages, title=f"{self.name} · {s.name}")

    def explorer(self, site: str | None = None, image: int = 0, order: str = "gate") -> go.Figure:
        """Every map of the site before, after and their difference, ordered by ``order``
        ("index", "gate" or "energy change")."""
        s = self.summary(site, image)
        by = order if order != "gate" or s.channel_values is not None else "energy change"
        return explorer_grids_figure(s.before, s.after, order=channel_order(s, by))

    def gates(self, site: str | None = None, image: int = 0, stage: str | None = None) -> go.Figure:
        """One stage of the site (by name, default the first; ``summary(site).gates`` lists them) as
        its layout draws it: a channel gate as bars sorted, a spatial gate as a map, a coordinate gate
        as channels x rows or columns, a strip gate as a profile, a full-size gate as a montage of
        per-channel maps; a frame note under the title."""
        s = self.summary(site, image)
        if not s.stages:
            raise FMWError(f"site {s.name!r} ({s.kind}) applies no gate")
        names = [candidate.name for candidate in s.stages]
        if stage is not None and stage not in names:
            raise FMWError(f"site {s.name!r} has no stage {stage!r}; its stages: {', '.join(names)}")
        chosen = s.stages[names.index(stage) if stage is not None else 0]
        return stage_figure(chosen, title=f"{s.name}: {stage_title(chosen)}")

    def weighting_off(self, image: int = 0) -> go.Figure:
        """With weighting on, each site switched off (gates = 1) alone, and all off: a classifier's
        predictions as bars; any other task's comparison as a table (pixels changed and per-class IoU;
        boxes lost, gained, moved and the score change; the relative change of each output tensor)."""
        inputs = self.inputs[image : image + 1]
        if self.task != "classification":
            changes = compare_task_weighting_off(
                self.model.model, inputs, self.task, postprocess=self.model.postprocess
            )
            return task_weighting_off_figure(changes, title=f"{self.name}: switching weighting off")
        comparison = compare_weighting_off(self.model.model, inputs, self.class_names)
        target = self.class_names[int(comparison.targets[0])]
        rows = comparison.rows
        return weighting_off_figure(
            [row.label for row in rows],
            [float(row.target_probability[0]) for row in rows],
            [self.class_names[int(row.predicted[0])] for row in rows],
            target=target,
            title=f"{self.name}: switching weighting off",
        )

    def _tables_html(self) -> str:
        head = f"<h4>{html.escape(self.name)}: {len(self.sites)} weighting site(s)</h4>"
        if not self.sites:
            return head + f"<p>{html.escape(NOTHING_FOUND)}</p>"
        rows = "".join(
            f"<tr><td>{html.escape(r.name or '(the model itself)')}</td><td>{html.escape(r.kind)}</td>"
            f"<td>{html.escape(', '.join(r.gates) or '(no gate)')}</td><td>{r.before.shape[1]}</td>"
            f"<td>{r.before.shape[2]}x{r.before.shape[3]}</td></tr>"
            for r in self.sites
        )
        predictions = ", ".join(html.escape(line) for line in self.task_predictions(k=3).lines()[:5])
        return (
            head + "<table><tr><th>site</th><th>kind</th><th>stages</th><th>channels</th><th>map</th></tr>"
            f"{rows}</table><p>image 0 ({html.escape(self.task)}) predicted: {predictions}</p>"
        )

    def _repr_html_(self) -> str:
        return self._tables_html()

    def __repr__(self) -> str:
        """One line for a terminal (the dataclass' own repr printed every recorded tensor)."""
        images = self.inputs.shape[0] if isinstance(self.inputs, torch.Tensor) else len(self.inputs)
        sites = [f"{record.name} ({record.kind})" for record in self.sites]
        listed = ", ".join(sites[:4]) + (f", and {len(sites) - 4} more" if len(sites) > 4 else "")
        return (
            f"Inspection of {self.name!r} ({self.task}) on {images} image{'s' * (images != 1)}: "
            f"{len(sites)} site{'s' * (len(sites) != 1)}{': ' + listed if sites else ''}"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._tables_html()))
        if any(record.gates for record in self.sites):
            display(self.figure())


def inspect(
    model: nn.Module | ModelHandle | LoadedCheckpoint | str,
    images: ImageLike | Sequence[ImageLike],
    *,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    random_weights: bool = False,
    task: str | None = None,
    postprocess: str | None = None,
) -> Inspection:
    """Probe ``model`` on ``images`` in one forward pass: every weighting site, its maps and gates,
    and the model's output, ready to summarise and draw.

    Args:
        model: an ``nn.Module``, a ``ModelHandle``, an fmw checkpoint from ``load_checkpoint``, or a
            model SPEC (``"cbam"``, ``"torchvision:mobilenet_v3_small"``, ``"timm:resnet18"``, ...).
        images: a float tensor (N, C, H, W), taken as already prepared; or one image or a list of
            them (uint8 tensors (3, H, W), PIL images, (H, W, 3) arrays, file paths), prepared the
            model's way (resized, cropped, normalised).
        input_size: for a plain module, the side images are prepared to (default 224).
        mean: for a plain module, the normalisation's mean (default ImageNet's).
        std: for a plain module, the normalisation's standard deviation (default ImageNet's).
        class_names: for a plain module, its classes (default "class 0", ...).
        random_weights: for a torchvision or timm SPEC, build it with seeded random weights
            instead of downloading its published ones.
        task: what the output means (default: inferred from it; a contradicting one is an
            ``FMWError``).
        postprocess: ``FILE.py:FUNCTION`` turning a raw output into detection's boxes.

    Returns:
        An ``Inspection``: ``result`` holds the raw records (tensors); ``site_names``,
        ``summary(site)`` (numpy), ``predictions()``, and the figures ``figure``, ``explorer``,
        ``gates``; in Jupyter it shows itself.

    Raises:
        FMWError: for a model, SPEC or image that cannot be used (the message says what to pass).

    Examples:
        >>> import numpy as np
        >>> import fmw
        >>> photo = np.zeros((48, 64, 3), np.uint8)  # any (H, W, 3) array, PIL image, tensor or path
        >>> inspection = fmw.inspect("eca", photo)
        >>> inspection.site_names, inspection.task
        (['stages.0.weighting', 'stages.1.weighting', 'stages.2.weighting'], 'classification')
        >>> summary = inspection.summary("stages.1.weighting")
        >>> summary.before.shape, [stage.name for stage in summary.stages], len(inspection.predictions())
        ((128, 7, 7), ['channel'], 5)
    """
    handle = handle_of(model, input_size, mean, std, class_names, random_weights, task, postprocess)
    inputs, crops = _inputs(handle, _as_images(images))
    return Inspection(handle, handle.label, inputs, probe(handle.model, inputs), crops)
