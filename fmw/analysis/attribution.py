"""Attributions through captum: Integrated Gradients, Saliency and Occlusion on the input image,
Grad-CAM, activation and conductance on both sides of one weighting site, and switching weighting off.

Every function takes a model and its input as the model takes it (a normalised batch (N, C, H, W),
a list of same-sized image tensors, or ``fmw.Inputs`` whose first 4-D tensor is the one attributed)
and returns dataclasses of numpy arrays. A ``score`` function turns the model's output into scores
(N, K) (default: the output itself, a classifier's logits; ``fmw.models.tasks`` gives one per task).
``override`` runs the same computation with gates replaced (``"all"``: every gate at 1,
or an ``override_gates`` mapping such as a dataset-mean gate), so attributions and predictions can
be compared site by site: ``ablation_steps`` lists "weighting on", each site off alone, and all off;
``compare_task_weighting_off`` compares the outputs of those steps as the model's task does, and
``task_attribution_score`` fixes a task's attribution score by one pass. Targets default to the
class the model predicts with its gates as trained, the same for every step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerActivation,
    LayerConductance,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torch import nn

from fmw.device import model_device
from fmw.errors import FMWError
from fmw.models.tasks import TASKS, postprocessed, task_score
from fmw.sites import GateReplacement, ProbeResult, find_sites, observation_points, override_gates, probe, select_sites
from fmw.sites.inputs import Inputs, ModelInputs, as_inputs, describe

__all__ = [
    "ALL_SITES",
    "INPUT_METHODS",
    "LAYER_METHODS",
    "WEIGHTING_ON",
    "AblationStep",
    "AttributionRow",
    "GateOverride",
    "InputAttribution",
    "LayerAttribution",
    "PredictionRow",
    "Progress",
    "Score",
    "Target",
    "TaskChangeRow",
    "TaskWeightingOff",
    "WeightingOffComparison",
    "ablation_steps",
    "attribute_input",
    "attribute_site",
    "attributions_with_weighting_off",
    "compare_task_weighting_off",
    "compare_weighting_off",
    "gates_overridden",
    "predicted_targets",
    "task_attribution_score",
]

INPUT_METHODS = ("integrated_gradients", "saliency", "occlusion")
LAYER_METHODS = ("grad_cam", "activation", "conductance")
WEIGHTING_ON = "weighting on"
ALL_SITES = "all sites"

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


@dataclass(frozen=True)
class AblationStep:
    """One way to run the model: ``label`` is "weighting on", a site's name or "all sites";
    ``override`` replaces the gates of ``sites`` (None for the normal pass)."""

    label: str
    sites: tuple[str, ...]
    override: GateOverride


@dataclass
class PredictionRow:
    """Predictions for one ``AblationStep``: softmax ``probabilities`` (N, K), the top-k classes
    ``top_indices`` (N, k) and the probability of each image's target class (N,)."""

    label: str
    sites: tuple[str, ...]
    probabilities: np.ndarray
    top_indices: np.ndarray
    target_probability: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.top_indices[:, 0]


@dataclass
class WeightingOffComparison:
    """Predictions with weighting on (``rows[0]``), with each chosen site switched off alone, and
    with all of them off (last row). ``replacement`` says what replaced the gates: "1" or "dataset mean"."""

    class_names: list[str]
    targets: np.ndarray
    replacement: str
    rows: list[PredictionRow]

    def table(self, image: int = 0) -> list[dict]:
        """One dict per row for image ``image``: prediction, target probability and its change
        from weighting on, top-k class names, and whether the top-1 class changed."""
        normal = self.rows[0]
        target = int(self.targets[image])
        return [
            {
                "switched off": row.label,
                "predicted": self.class_names[int(row.predicted[image])],
                "target": self.class_names[target],
                "p(target)": float(row.target_probability[image]),
                "change": float(row.target_probability[image] - normal.target_probability[image]),
                "top-k": [self.class_names[int(i)] for i in row.top_indices[image]],
                "prediction changed": bool(row.predicted[image] != normal.predicted[image]),
            }
            for row in self.rows
        ]


@dataclass
class TaskChangeRow:
    """One ``AblationStep`` with its output compared to weighting on's by the task's ``compares``
    (``fmw.models.tasks.TASKS``): ``changes`` maps each named number to its value."""

    label: str
    sites: tuple[str, ...]
    changes: dict[str, float]


@dataclass
class TaskWeightingOff:
    """What switching weighting off changes in the output, as ``task`` measures it: one row per
    chosen site switched off alone, then all of them (last). ``replacement``: "1" or "dataset mean"."""

    task: str
    replacement: str
    rows: list[TaskChangeRow]

    def table(self) -> list[dict[str, Any]]:
        """One dict per row: the step, then every number the task's comparison names."""
        return [{"switched off": row.label, **row.changes} for row in self.rows]


@dataclass
class AttributionRow:
    """An input attribution computed under one ``AblationStep``."""

    label: str
    sites: tuple[str, ...]
    attribution: InputAttribution


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
    """Attribute the ``target`` column of ``score`` (default: a classifier's logits, the predicted
    class) to the input pixels.

    ``method``: "integrated_gradients" (``n_steps`` Gauss-Legendre points from ``baseline``, 0 =
    the dataset's mean colour in normalised space; returns the convergence delta), "saliency"
    (absolute gradient, captum's default) or "occlusion" (``window`` x ``window`` patches over all
    colour channels moved by ``stride``, replaced by ``baseline``). ``internal_batch_size`` bounds
    how many path points or occluded copies go through the model at once. Call ``model.eval()`` first.
    """
    call = _call_of(inputs, model_device(model))
    inputs = call.tensor.clone()  # a new tensor object: captum may flip requires_grad on it
    targets = _targets(model, call, target, score)
    images = inputs.shape[0]
    with gates_overridden(model, override):
        if method == "integrated_gradients":
            expected = _path_calls(images, n_steps, internal_batch_size) + 2
            forward = _CountingForward(model, call, score, expected, progress)
            attributions, delta = IntegratedGradients(forward).attribute(
                inputs,
                baselines=baseline,
                target=targets,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
        elif method == "saliency":
            forward = _CountingForward(model, call, score, 1, progress)
            attributions, delta = Saliency(forward).attribute(inputs.requires_grad_(), target=targets), None
        elif method == "occlusion":
            channels, height, width = inputs.shape[1:]
            window = min(window, height, width)
            windows = ((height - window) // stride + 1) * ((width - window) // stride + 1)
            per_eval = max(1, (internal_batch_size or images) // images)
            forward = _CountingForward(model, call, score, 1 + math.ceil(windows / per_eval), progress)
            attributions, delta = (
                Occlusion(forward).attribute(
                    inputs,
                    sliding_window_shapes=(channels, window, window),
                    strides=(channels, stride, stride),
                    baselines=baseline,
                    target=targets,
                    perturbations_per_eval=per_eval,
                ),
                None,
            )
        else:
            raise ValueError(
                f"unknown input attribution method {method!r}; expected one of: {', '.join(INPUT_METHODS)}"
            )
    forward.finish()
    return InputAttribution(
        method=method,
        targets=targets.cpu().numpy(),
        attributions=_numpy(attributions),
        delta=None if delta is None else _numpy(delta),
    )


@contextmanager
def _site_sides(model: nn.Module, site: str) -> Iterator[tuple[tuple[nn.Module, bool], tuple[nn.Module, bool]]]:
    """The layers (and captum's ``attribute_to_layer_input``) whose tensors are the site's two sides:
    identity modules the weighted map and the product pass through, or, for a placeholder site
    without a gate, the module's own input and output."""
    (spec,) = select_sites(model, [site])
    if not spec.stages:
        yield (spec.module, True), (spec.module, False)
        return
    with observation_points(model, site) as (before, after):
        yield (before, False), (after, False)


def _layer_attribution(
    method: str,
    forward: _CountingForward,
    layer: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    to_input: bool,
    baseline: float,
    n_steps: int,
    internal_batch_size: int | None,
) -> torch.Tensor:
    if method == "grad_cam":
        return LayerGradCam(forward, layer).attribute(
            inputs, target=targets, attribute_to_layer_input=to_input, relu_attributions=True
        )
    if method == "activation":
        return LayerActivation(forward, layer).attribute(inputs, attribute_to_layer_input=to_input)
    if method == "conductance":
        return LayerConductance(forward, layer).attribute(
            inputs,
            baselines=baseline,
            target=targets,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            attribute_to_layer_input=to_input,
        )
    raise ValueError(f"unknown layer attribution method {method!r}; expected one of: {', '.join(LAYER_METHODS)}")


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
    """Attribute the ``target`` column of ``score`` (default: a classifier's logits, the predicted
    class) to both sides of weighting site
    ``site``: the feature map it weighted (before) and its product (after), exactly those tensors
    also where the product is made inside a larger module's forward.

    ``method``: "grad_cam" (Selvaraju et al. 2017, ReLU applied, summed over channels), "activation"
    (the site's tensors themselves, target ignored) or "conductance" (``n_steps`` points from
    ``baseline``). Captum's hooks act on every thread, so the work runs on a private copy of the
    model: a dashboard's other threads never see them. Call ``model.eval()`` first.
    """
    private = copy.deepcopy(model)
    call = _call_of(inputs, model_device(private))
    inputs = call.tensor
    targets = _targets(private, call, target, score)
    calls = _path_calls(inputs.shape[0], n_steps + 1, internal_batch_size) if method == "conductance" else 1
    forward = _CountingForward(private, call, score, 2 * calls, progress)
    find_sites(private, example=call.rebuild(inputs[:1]))  # the copy's sites, found on an input it accepts
    with gates_overridden(private, override), _site_sides(private, site) as sides:
        before, after = [
            _layer_attribution(
                method, forward, layer, inputs, targets, to_input, baseline, n_steps, internal_batch_size
            )
            for layer, to_input in sides
        ]
    forward.finish()
    return LayerAttribution(
        method=method, site=site, targets=targets.cpu().numpy(), before=_numpy(before), after=_numpy(after)
    )


def _fit_mean_gates(
    mean_gates: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]], reference: ProbeResult
) -> dict[str, dict[str, torch.Tensor]]:
    """Dataset-mean gates shaped for this input, every layout: a gate whose positions differ from the
    site's gate at this input size resized (bilinear) to it; refuses gates of another model."""
    fitted: dict[str, dict[str, torch.Tensor]] = {}
    for record in reference.sites:
        if record.name not in mean_gates:
            continue
        fitted[record.name] = {}
        for stage, gate in mean_gates[record.name].items():
            gate = torch.as_tensor(gate).float()
            actual = record.gates.get(stage)
            if actual is None or gate.dim() != 4 or gate.shape[1] != actual.shape[1]:
                shape = None if actual is None else tuple(actual.shape)
                raise ValueError(
                    f"the mean {stage} gate {tuple(gate.shape)} for site {record.name!r} does not fit this model "
                    f"(its {stage} gate is {shape}); compute the statistics with the same checkpoint"
                )
            if gate.shape[2:] != actual.shape[2:]:
                gate = F.interpolate(gate, size=actual.shape[2:], mode="bilinear", align_corners=False)
            fitted[record.name][stage] = gate
    return fitted


def ablation_steps(
    model: nn.Module,
    sites: Sequence[str] | None = None,
    mean_gates: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> list[AblationStep]:
    """Weighting on, then each of ``sites`` (default: every site that has a gate) switched off
    alone, then all of them off. Switched off means gates at 1, or at ``mean_gates[site]`` when given."""
    chosen = [spec.name for spec in select_sites(model, sites) if sites is not None or spec.stages]
    if not chosen:
        raise ValueError("the model has no weighting site with a gate to switch off")
    if mean_gates is not None:
        missing = [name for name in chosen if name not in mean_gates]
        if missing:
            raise KeyError(f"no dataset-mean gate for site(s) {', '.join(missing)}; compute statistics for every site")

    def replacements(names: Sequence[str]) -> dict[str, GateReplacement]:
        return {name: 1.0 if mean_gates is None else mean_gates[name] for name in names}

    steps = [AblationStep(WEIGHTING_ON, (), None)]
    steps += [AblationStep(name, (name,), replacements([name])) for name in chosen]
    steps.append(AblationStep(ALL_SITES, tuple(chosen), replacements(chosen)))
    return steps


def _plan(
    model: nn.Module,
    call: _Call,
    sites: Sequence[str] | None,
    mean_gates: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]] | None,
) -> tuple[ProbeResult, list[AblationStep]]:
    """The normal pass (for targets and gate shapes) and the steps, mean gates fitted to this input."""
    reference = probe(model, call.rebuild(call.tensor), keep_on_device=True, maps=False)
    fitted = None if mean_gates is None else _fit_mean_gates(mean_gates, reference)
    return reference, ablation_steps(model, sites, fitted)


def compare_weighting_off(
    model: nn.Module,
    inputs: ModelInputs,
    class_names: Sequence[str],
    *,
    sites: Sequence[str] | None = None,
    mean_gates: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]] | None = None,
    target: Target = None,
    top_k: int = 5,
    score: Score = logits_score,
) -> WeightingOffComparison:
    """Predictions with weighting on, with each site switched off alone and with all off (gates at 1,
    or at the dataset-mean gates of ``fmw.analysis.stats.GateStatistics.replacements()``): top-k and the
    probability of ``target`` (default: the class predicted with weighting on)."""
    call = _call_of(inputs, model_device(model))
    reference, steps = _plan(model, call, sites, mean_gates)
    reference_logits = score(reference.output)
    targets = reference_logits.argmax(dim=1) if target is None else _targets(model, call, target, score)
    k = min(top_k, reference_logits.shape[1])
    rows = []
    for step in steps:
        if step.override is None:
            logits = reference_logits
        else:
            with gates_overridden(model, step.override), torch.no_grad():
                logits = score(call.run(model))
        probabilities = logits.float().softmax(dim=1)
        rows.append(
            PredictionRow(
                label=step.label,
                sites=step.sites,
                probabilities=_numpy(probabilities),
                top_indices=probabilities.topk(k, dim=1).indices.cpu().numpy(),
                target_probability=_numpy(probabilities.gather(1, targets.view(-1, 1)).squeeze(1)),
            )
        )
    return WeightingOffComparison(
        class_names=list(class_names),
        targets=targets.cpu().numpy(),
        replacement="1" if mean_gates is None else "dataset mean",
        rows=rows,
    )


def attributions_with_weighting_off(
    model: nn.Module,
    inputs: ModelInputs,
    method: str = "integrated_gradients",
    *,
    sites: Sequence[str] | None = None,
    mean_gates: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]] | None = None,
    target: Target = None,
    score: Score = logits_score,
    progress: Progress | None = None,
    **options: Any,
) -> list[AttributionRow]:
    """``attribute_input`` under every ``ablation_steps`` step, for one fixed target per image
    (default: the class predicted with weighting on). ``options`` go to ``attribute_input``;
    ``progress`` sees the fraction of all steps done."""
    call = _call_of(inputs, model_device(model))
    reference, steps = _plan(model, call, sites, mean_gates)
    targets = score(reference.output).argmax(dim=1) if target is None else _targets(model, call, target, score)
    rows = []
    for position, step in enumerate(steps):

        def step_progress(fraction: float, position: int = position) -> None:
            if progress is not None:
                progress((position + fraction) / len(steps))

        attribution = attribute_input(
            model,
            inputs,
            method,
            target=targets,
            score=score,
            override=step.override,
            progress=step_progress,
            **options,
        )
        rows.append(AttributionRow(step.label, step.sites, attribution))
    return rows


def compare_task_weighting_off(
    model: nn.Module,
    inputs: ModelInputs,
    task: str,
    *,
    sites: Sequence[str] | None = None,
    mean_gates: Mapping[str, Mapping[str, torch.Tensor | np.ndarray]] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
) -> TaskWeightingOff:
    """The output with each chosen site switched off alone and with all off (gates at 1, or at the
    dataset-mean gates), compared with weighting on's by ``task``'s ``compares``: top-1 changes
    (classification), pixels changed and per-class IoU (segmentation), boxes lost, gained and moved
    and the score change (detection), the relative change of each output tensor (other). Outputs go
    through ``postprocess`` first when given (a YOLO-style model's head maps to boxes)."""
    if task not in TASKS:
        raise FMWError(f"unknown task {task!r}; give one of: {', '.join(TASKS)}")
    call = _call_of(inputs, model_device(model))
    reference, steps = _plan(model, call, sites, mean_gates)
    on = postprocessed(postprocess, reference.output)
    rows = []
    for step in steps[1:]:
        with gates_overridden(model, step.override), torch.no_grad():
            off = postprocessed(postprocess, call.run(model))
        rows.append(TaskChangeRow(step.label, step.sites, TASKS[task].compares(on, off)))
    return TaskWeightingOff(task, "1" if mean_gates is None else "dataset mean", rows)


def task_attribution_score(
    model: nn.Module,
    inputs: ModelInputs,
    task: str,
    *,
    postprocess: Callable[[Any], Any] | None = None,
    box: int = 0,
    tensor: int = 0,
) -> Score:
    """``task``'s attribution score (``fmw.models.tasks.task_score``), fixed by one pass with weighting
    on: classification, the logits (target: a class); segmentation, each class's logits summed where
    it is predicted (target: a class); detection, the score of the ``box``-th best box of the first
    image, matched by IoU in every pass (target 0); other, the sum of output tensor ``tensor``
    (target 0). Outputs go through ``postprocess`` first when given."""
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
