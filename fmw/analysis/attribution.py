"""Attributions through captum, as one registry of methods: Integrated Gradients, Saliency and
Occlusion on the input image; Grad-CAM, activation and conductance on both sides of one weighting site.

Each method is a small subclass of ``AttributionMethod`` with one signature (captum's and
torch-cam's pattern): its ``name``, ``title``, ``description``, whether it works ``at_site`` and the
``options`` it reads; ``ATTRIBUTION_METHODS`` holds one instance of each by name, and the command
line and the dashboard read their choices and help texts from it. A new method is one subclass and
one ``register_attribution_method`` call.

``attribute_input`` and ``attribute_site`` take a model and its input as the model takes it (a
normalised batch (N, C, H, W), a list of same-sized image tensors, or ``fmw.Inputs`` whose first
4-D tensor is the one attributed) and return dataclasses of numpy arrays. A ``score`` function turns
the model's output into scores (N, K) (default: the output itself, a classifier's logits;
``task_attribution_score`` fixes one per task by one pass). ``override`` runs the same computation
with gates replaced (``"all"``: every gate at 1, or an ``override_gates`` mapping such as a
dataset-mean gate); ``fmw.analysis.ablation`` switches weighting off site by site with it. Targets
default to the class the model predicts with its gates as trained.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from captum import attr
from torch import nn

from fmw.device import model_device
from fmw.errors import FMWError
from fmw.models.tasks import postprocessed, task_score
from fmw.sites import GateReplacement, find_sites, observation_points, override_gates, select_sites
from fmw.sites.inputs import Inputs, ModelInputs, as_inputs, describe

__all__ = [
    "ATTRIBUTION_METHODS",
    "INPUT_METHODS",
    "LAYER_METHODS",
    "Activation",
    "AttributionMethod",
    "AttributionOptions",
    "Conductance",
    "GateOverride",
    "GradCam",
    "InputAttribution",
    "IntegratedGradients",
    "LayerAttribution",
    "Occlusion",
    "Progress",
    "Saliency",
    "Score",
    "SiteSide",
    "Target",
    "attribute_input",
    "attribute_site",
    "attribution_method",
    "gates_overridden",
    "logits_score",
    "predicted_targets",
    "register_attribution_method",
    "task_attribution_score",
]

GateOverride = Literal["all"] | Mapping[str, GateReplacement] | None
"""None: gates as trained; "all": every gate at 1; a mapping: ``override_gates`` replacements."""
Target = int | Sequence[int] | torch.Tensor | None
"""The class to explain: one for all images, one per image, or None for the predicted class."""
Progress = Callable[[float], None]
"""Called with the fraction done (0..1) while a slow attribution runs; 1.0 once at the end."""
Score = Callable[[Any], torch.Tensor]
"""The model's output -> scores (N, K) to attribute (``target`` picks the column)."""


def logits_score(output: Any) -> torch.Tensor:
    """A classifier's output as it is: logits (N, classes); any other output is an ``FMWError``."""
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return output
    raise FMWError(
        f"the model returned {describe(output)}, not logits (N, classes); pass score=... turning its output "
        "into scores (N, K) (fmw.models.tasks.task_score gives one for segmentation, detection and other outputs)"
    )


@dataclass
class _Call:
    """The model's input split into the tensor attributed (N, C, H, W) and how to rebuild the call."""

    tensor: torch.Tensor
    rebuild: Callable[[torch.Tensor], Inputs]

    def run(self, model: nn.Module, tensor: torch.Tensor | None = None) -> Any:
        return self.rebuild(self.tensor if tensor is None else tensor).call(model)


def _call_of(inputs: ModelInputs, device: torch.device) -> _Call:
    """``inputs`` on ``device``, as a tensor to attribute: the batch itself, a list of same-sized
    images stacked (and unstacked for each call), or the first 4-D tensor argument of ``Inputs``."""
    call = as_inputs(inputs).to(device)
    if len(call.args) == 1 and isinstance(call.args[0], list) and not call.kwargs:
        images = call.args[0]
        if len({tuple(image.shape) for image in images}) != 1 or images[0].dim() != 3:
            raise ValueError(
                f"attribution stacks a list of images into one batch, so they must be (C, H, W) of one size; got "
                f"{describe(images)}. Resize them to one size first"
            )
        return _Call(torch.stack(images).detach(), lambda tensor: Inputs(list(tensor.unbind(0))))
    position = next((i for i, arg in enumerate(call.args) if isinstance(arg, torch.Tensor) and arg.dim() == 4), None)
    if position is None or not call.args[position].is_floating_point():
        raise ValueError(f"inputs must hold a normalised float tensor (N, C, H, W) to attribute, got {call.describe()}")
    args, kwargs = call.args, call.kwargs

    def rebuild(tensor: torch.Tensor) -> Inputs:
        return Inputs(*args[:position], tensor, *args[position + 1 :], **kwargs)

    return _Call(args[position].detach(), rebuild)


@dataclass
class InputAttribution:
    """Attribution of ``targets`` to every input value: ``attributions`` (N, C, H, W) in the model's
    input space; ``delta`` (N,) is IG's convergence delta, sum(attributions) - (F(x) - F(baseline))."""

    method: str
    targets: np.ndarray
    attributions: np.ndarray
    delta: np.ndarray | None = None

    @property
    def maps(self) -> np.ndarray:
        """(N, H, W): summed over colour channels, for overlays (the sum keeps completeness)."""
        return self.attributions.sum(axis=1)


@dataclass
class LayerAttribution:
    """Attribution of ``targets`` at one weighting site: to its input (``before``) and to its output
    (``after``), shaped like the site's tensors (N, C, h, w); Grad-CAM's are (N, 1, h, w)."""

    method: str
    site: str
    targets: np.ndarray
    before: np.ndarray
    after: np.ndarray

    @property
    def maps_before(self) -> np.ndarray:
        """(N, h, w): ``before`` summed over channels."""
        return self.before.sum(axis=1)

    @property
    def maps_after(self) -> np.ndarray:
        """(N, h, w): ``after`` summed over channels."""
        return self.after.sum(axis=1)


@contextmanager
def gates_overridden(model: nn.Module, override: GateOverride) -> Iterator[None]:
    """``override_gates`` for a ``GateOverride``: nothing for None, every gate at 1 for "all"."""
    context: AbstractContextManager[object]
    if override is None:
        context = nullcontext()
    elif isinstance(override, str):
        if override != "all":
            raise ValueError(f"override must be None, 'all' or a mapping of site names to gates, got {override!r}")
        context = override_gates(model, value=1.0)
    else:
        context = override_gates(model, override)
    with context:
        yield


def predicted_targets(model: nn.Module, inputs: ModelInputs, score: Score = logits_score) -> torch.Tensor:
    """The column of ``score`` each image is predicted as (a classifier: its class), with the gates
    as trained (N,), on the model's device."""
    call = _call_of(inputs, model_device(model))
    with torch.no_grad():
        return score(call.run(model)).argmax(dim=1)


def _targets(model: nn.Module, call: _Call, target: Target, score: Score) -> torch.Tensor:
    if target is None:
        with torch.no_grad():
            return score(call.run(model)).argmax(dim=1)
    images = call.tensor.shape[0]
    targets = torch.as_tensor(target, dtype=torch.long, device=model_device(model)).reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(images)
    if targets.numel() != images:
        raise ValueError(f"{targets.numel()} targets for {images} images; give one per image or one for all")
    return targets


class _CountingForward:
    """The model as captum's forward function (the attributed tensor in, ``score`` of the output
    out), reporting progress as calls / ``expected`` calls (an estimate from the batching
    arguments, so it is capped below 1 until ``finish``)."""

    def __init__(self, model: nn.Module, call: _Call, score: Score, expected: int, progress: Progress | None) -> None:
        self.model, self.call, self.score = model, call, score
        self.expected, self.progress, self.calls = max(expected, 1), progress, 0

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        output = self.score(self.call.run(self.model, inputs))
        self.calls += 1
        if self.progress is not None:
            self.progress(min(self.calls / self.expected, 0.99))
        return output

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(1.0)


def _path_calls(images: int, n_steps: int, internal_batch_size: int | None) -> int:
    """Forward calls captum makes for ``n_steps`` points of a path, batched by ``internal_batch_size``."""
    if internal_batch_size is None:
        return 1
    return math.ceil(n_steps / max(1, internal_batch_size // images))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


@dataclass(frozen=True)
class AttributionOptions:
    """What a method may read (each method's ``options`` names the fields it reads): ``baseline``,
    the reference value in normalised input space (0 = the dataset's mean colour); ``n_steps``, the
    points of an integration path; ``internal_batch_size``, how many path points or occluded copies
    go through the model at once (None: all); ``window`` and ``stride``, Occlusion's square patch
    and its step in pixels."""

    baseline: float = 0.0
    n_steps: int = 50
    internal_batch_size: int | None = None
    window: int = 8
    stride: int = 4


@dataclass(frozen=True)
class SiteSide:
    """One side of a weighting site as captum's layer methods take it: the ``layer`` whose output
    (or, with ``to_input``, whose input) is the site's tensor on that side."""

    layer: nn.Module
    to_input: bool


class AttributionMethod(ABC):
    """One attribution method, with one signature for every method.

    Subclasses set ``name`` (the registry's key, the command line's choice), ``title`` (how pages
    name it), ``description`` (one sentence: what it shows, the help texts), ``at_site`` (False: it
    attributes to the input pixels; True: to one side of a weighting site, given as ``side``) and
    ``options`` (the ``AttributionOptions`` fields it reads), and implement ``attribute``.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    at_site: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    @property
    def stepped(self) -> bool:
        """Whether it integrates along a path, so that ``n_steps`` trades time for exactness."""
        return "n_steps" in self.options

    def forward_calls(self, shape: torch.Size, options: AttributionOptions) -> int:
        """About how many model calls one ``attribute`` makes on inputs of ``shape`` (N, C, H, W),
        for progress reports."""
        return 1

    @abstractmethod
    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attribute ``targets`` (N,), columns of ``forward(inputs)`` (N, K), to ``inputs`` or, for a
        site method, to the tensor of ``side``; returns the attributions and, where the method has
        one, its convergence delta (N,)."""


ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {}
"""Every attribution method by name, input methods first, in the order pages list them."""


def register_attribution_method(method: type[AttributionMethod]) -> type[AttributionMethod]:
    """Add one instance of ``method`` to ``ATTRIBUTION_METHODS`` (a class decorator).

    Args:
        method: a subclass of ``AttributionMethod`` whose ``name`` is not taken.

    Returns:
        ``method`` itself.

    Examples:
        >>> @register_attribution_method
        ... class InputTimesGradient(AttributionMethod):
        ...     name, title, description = "input_x_gradient", "Input × gradient", "the gradient times the input."
        ...     def attribute(self, forward, inputs, targets, options, side=None):
        ...         return captum.attr.InputXGradient(forward).attribute(inputs.requires_grad_(), target=targets), None
    """
    if method.name in ATTRIBUTION_METHODS:
        raise ValueError(f"an attribution method named {method.name!r} is registered already")
    ATTRIBUTION_METHODS[method.name] = method()
    return method


def attribution_method(name: str, *, at_site: bool | None = None) -> AttributionMethod:
    """The registered method ``name``.

    Args:
        name: its ``name`` ("integrated_gradients", "grad_cam", ...).
        at_site: when given, only a method that works at a site (True) or on the input (False).

    Returns:
        The method.

    Raises:
        ValueError: no such method (of that kind); the message lists those there are.

    Examples:
        >>> attribution_method("grad_cam").description
    """
    method = ATTRIBUTION_METHODS.get(name)
    if method is None or (at_site is not None and method.at_site != at_site):
        kind = "" if at_site is None else ("layer " if at_site else "input ")
        names = [m.name for m in ATTRIBUTION_METHODS.values() if at_site is None or m.at_site == at_site]
        raise ValueError(f"unknown {kind}attribution method {name!r}; expected one of: {', '.join(names)}")
    return method


def _occlusion_window(shape: torch.Size, options: AttributionOptions) -> int:
    return min(options.window, shape[2], shape[3])


def _occlusion_per_eval(shape: torch.Size, options: AttributionOptions) -> int:
    return max(1, (options.internal_batch_size or shape[0]) // shape[0])


def _side(side: SiteSide | None, method: AttributionMethod) -> SiteSide:
    if side is None:
        raise ValueError(f"{method.name} attributes at a weighting site; use attribute_site")
    return side


@register_attribution_method
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients (Sundararajan et al. 2017), with its convergence delta."""

    name = "integrated_gradients"
    title = "Integrated Gradients"
    description = (
        "the gradient integrated from the baseline to the image (its attributions add up to the change of the "
        "target's score)"
    )
    options = ("baseline", "n_steps", "internal_batch_size")

    def forward_calls(self, shape: torch.Size, options: AttributionOptions) -> int:
        return _path_calls(shape[0], options.n_steps, options.internal_batch_size) + 2

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attributions, delta = attr.IntegratedGradients(forward).attribute(
            inputs,
            baselines=options.baseline,
            target=targets,
            n_steps=options.n_steps,
            internal_batch_size=options.internal_batch_size,
            return_convergence_delta=True,
        )
        return attributions, delta


@register_attribution_method
class Saliency(AttributionMethod):
    """Saliency (Simonyan et al. 2014): the absolute gradient, captum's default."""

    name = "saliency"
    title = "Saliency"
    description = "the absolute gradient of the target's score at every pixel (one pass)"

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return attr.Saliency(forward).attribute(inputs.requires_grad_(), target=targets), None


@register_attribution_method
class Occlusion(AttributionMethod):
    """Occlusion (Zeiler and Fergus 2014): square patches over all colour channels replaced by the baseline."""

    name = "occlusion"
    title = "Occlusion"
    description = (
        "how much the target's score drops when a square patch is replaced by the baseline (one pass per patch "
        "position)"
    )
    options = ("baseline", "internal_batch_size", "window", "stride")

    def forward_calls(self, shape: torch.Size, options: AttributionOptions) -> int:
        window, stride = _occlusion_window(shape, options), options.stride
        windows = ((shape[2] - window) // stride + 1) * ((shape[3] - window) // stride + 1)
        return 1 + math.ceil(windows / _occlusion_per_eval(shape, options))

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        channels, window, stride = inputs.shape[1], _occlusion_window(inputs.shape, options), options.stride
        attributions = attr.Occlusion(forward).attribute(
            inputs,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=options.baseline,
            target=targets,
            perturbations_per_eval=_occlusion_per_eval(inputs.shape, options),
        )
        return attributions, None


@register_attribution_method
class GradCam(AttributionMethod):
    """Grad-CAM (Selvaraju et al. 2017) at one side of a site, ReLU applied, summed over channels."""

    name = "grad_cam"
    title = "Grad-CAM"
    description = "the site's map weighted by its channel-mean gradient, summed over channels, negatives cut (one pass)"
    at_site = True

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        side = _side(side, self)
        return attr.LayerGradCam(forward, side.layer).attribute(
            inputs, target=targets, attribute_to_layer_input=side.to_input, relu_attributions=True
        ), None


@register_attribution_method
class Activation(AttributionMethod):
    """The site's tensors themselves (the target is ignored)."""

    name = "activation"
    title = "Activation"
    description = "the site's feature maps themselves (the target is ignored)"
    at_site = True

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        side = _side(side, self)
        return attr.LayerActivation(forward, side.layer).attribute(inputs, attribute_to_layer_input=side.to_input), None


@register_attribution_method
class Conductance(AttributionMethod):
    """Layer conductance (Dhamdhere et al. 2018): Integrated Gradients through the site's units."""

    name = "conductance"
    title = "Conductance"
    description = "Integrated Gradients' flow through every unit of the site's map"
    at_site = True
    options = ("baseline", "n_steps", "internal_batch_size")

    def forward_calls(self, shape: torch.Size, options: AttributionOptions) -> int:
        return _path_calls(shape[0], options.n_steps + 1, options.internal_batch_size)

    def attribute(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        options: AttributionOptions,
        side: SiteSide | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        side = _side(side, self)
        return attr.LayerConductance(forward, side.layer).attribute(
            inputs,
            baselines=options.baseline,
            target=targets,
            n_steps=options.n_steps,
            internal_batch_size=options.internal_batch_size,
            attribute_to_layer_input=side.to_input,
        ), None


INPUT_METHODS = tuple(name for name, method in ATTRIBUTION_METHODS.items() if not method.at_site)
"""The names of the methods that attribute to the input pixels."""
LAYER_METHODS = tuple(name for name, method in ATTRIBUTION_METHODS.items() if method.at_site)
"""The names of the methods that attribute at a weighting site."""


def attribute_input(
    model: nn.Module,
    inputs: ModelInputs,
    method: str = "integrated_gradients",
    *,
    target: Target = None,
    score: Score = logits_score,
    override: GateOverride = None,
    baseline: float = 0.0,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    window: int = 8,
    stride: int = 4,
    progress: Progress | None = None,
) -> InputAttribution:
    """Attribute the ``target`` column of ``score`` to the input pixels.

    Call ``model.eval()`` first.

    Args:
        model: the model.
        inputs: its input as it takes it (see the module's docstring).
        method: the name of an input method of ``ATTRIBUTION_METHODS`` (``INPUT_METHODS``).
        target: the column to explain: one for all images, one per image, or None for the predicted one.
        score: the model's output -> scores (N, K) (default: a classifier's logits).
        override: gates replaced while attributing (``GateOverride``).
        baseline, n_steps, internal_batch_size, window, stride: ``AttributionOptions``; each method
            reads those its ``options`` names.
        progress: called with the fraction done.

    Returns:
        The attributions (N, C, H, W) in the model's input space, the targets and, for Integrated
        Gradients, the convergence delta sum(attributions) - (F(x) - F(baseline)).

    Raises:
        ValueError: an unknown input method, a wrong number of targets, or no float tensor to attribute.

    Examples:
        >>> result = attribute_input(model.eval(), batch, "integrated_gradients", n_steps=32)
        >>> result.maps.shape, result.delta  # (N, H, W), summed over colour channels
    """
    chosen = attribution_method(method, at_site=False)
    options = AttributionOptions(baseline, n_steps, internal_batch_size, window, stride)
    call = _call_of(inputs, model_device(model))
    inputs = call.tensor.clone()  # a new tensor object: captum may flip requires_grad on it
    targets = _targets(model, call, target, score)
    forward = _CountingForward(model, call, score, chosen.forward_calls(inputs.shape, options), progress)
    with gates_overridden(model, override):
        attributions, delta = chosen.attribute(forward, inputs, targets, options)
    forward.finish()
    return InputAttribution(
        method=method,
        targets=targets.cpu().numpy(),
        attributions=_numpy(attributions),
        delta=None if delta is None else _numpy(delta),
    )


@contextmanager
def _site_sides(model: nn.Module, site: str) -> Iterator[tuple[SiteSide, SiteSide]]:
    """The layers (and captum's ``attribute_to_layer_input``) whose tensors are the site's two sides:
    identity modules the weighted map and the product pass through, or, for a placeholder site
    without a gate, the module's own input and output."""
    (spec,) = select_sites(model, [site])
    if not spec.stages:
        yield SiteSide(spec.module, True), SiteSide(spec.module, False)
        return
    with observation_points(model, site) as (before, after):
        yield SiteSide(before, False), SiteSide(after, False)


def attribute_site(
    model: nn.Module,
    inputs: ModelInputs,
    site: str,
    method: str = "grad_cam",
    *,
    target: Target = None,
    score: Score = logits_score,
    override: GateOverride = None,
    baseline: float = 0.0,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    progress: Progress | None = None,
) -> LayerAttribution:
    """Attribute the ``target`` column of ``score`` to both sides of weighting site ``site``: the
    feature map it weighted (before) and its product (after), exactly those tensors also where the
    product is made inside a larger module's forward.

    Captum's hooks act on every thread, so the work runs on a private copy of the model: a
    dashboard's other threads never see them. Call ``model.eval()`` first.

    Args:
        model, inputs, target, score, override, progress: as for ``attribute_input``.
        site: the site's name (``fmw.find_sites(model)``).
        method: the name of a site method of ``ATTRIBUTION_METHODS`` (``LAYER_METHODS``).
        baseline, n_steps, internal_batch_size: ``AttributionOptions`` (conductance reads them).

    Returns:
        The attributions on both sides, shaped like the site's tensors (N, C, h, w); Grad-CAM's
        are (N, 1, h, w).

    Raises:
        ValueError: an unknown site method; KeyError: no site of that name.

    Examples:
        >>> result = attribute_site(model.eval(), batch, "stages.1.weighting", "grad_cam")
        >>> result.maps_before[0], result.maps_after[0]
    """
    chosen = attribution_method(method, at_site=True)
    options = AttributionOptions(baseline=baseline, n_steps=n_steps, internal_batch_size=internal_batch_size)
    private = copy.deepcopy(model)
    call = _call_of(inputs, model_device(private))
    inputs = call.tensor
    targets = _targets(private, call, target, score)
    forward = _CountingForward(private, call, score, 2 * chosen.forward_calls(inputs.shape, options), progress)
    find_sites(private, example=call.rebuild(inputs[:1]))  # the copy's sites, found on an input it accepts
    with gates_overridden(private, override), _site_sides(private, site) as sides:
        before, after = [chosen.attribute(forward, inputs, targets, options, side)[0] for side in sides]
    forward.finish()
    return LayerAttribution(
        method=method, site=site, targets=targets.cpu().numpy(), before=_numpy(before), after=_numpy(after)
    )


def task_attribution_score(
    model: nn.Module,
    inputs: ModelInputs,
    task: str,
    *,
    postprocess: Callable[[Any], Any] | None = None,
    box: int = 0,
    tensor: int = 0,
) -> Score:
    """``task``'s attribution score (``fmw.models.tasks.task_score``), fixed by one pass with weighting on.

    Args:
        model, inputs: as for ``attribute_input``.
        task: classification, the logits (target: a class); segmentation, each class's logits summed
            where it is predicted (target: a class); detection, the score of the ``box``-th best box
            of the first image, matched by IoU in every pass (target 0); other, the sum of output
            tensor ``tensor`` (target 0).
        postprocess: turns the raw output into the task's structure first.
        box, tensor: which box (detection) or output tensor (other).

    Returns:
        A ``Score`` to pass to ``attribute_input`` or ``attribute_site``.

    Raises:
        FMWError: the detector found no ``box``-th box.

    Examples:
        >>> score = task_attribution_score(handle.model, [image], "detection", box=0)
        >>> attribute_input(handle.model, [image], "saliency", score=score, target=0)
    """
    if task == "classification":
        return logits_score
    call = _call_of(inputs, model_device(model))
    with torch.no_grad():
        reference = postprocessed(postprocess, call.run(model))
    if task == "detection":
        scores = reference[0]["scores"]
        if not 0 <= box < len(scores):
            raise FMWError(f"the detector found {len(scores)} box(es) in this image, so there is no box {box}")
        box = int(scores.argsort(descending=True, stable=True)[box])
    chosen = task_score(task, reference, box=box, tensor=tensor)
    return lambda output: chosen(postprocessed(postprocess, output))
