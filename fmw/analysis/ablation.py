"""Switching weighting off, site by site: ``ablation_steps`` lists "weighting on", each site off
alone and all off (gates at 1, or at dataset-mean gates); ``compare_weighting_off`` compares a
classifier's predictions over those steps, ``compare_task_weighting_off`` any model's outputs as its
task does, and ``attributions_with_weighting_off`` an input attribution under every step. Targets
default to the class the model predicts with its gates as trained, the same for every step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmw.analysis.attribution import (
    GateOverride,
    InputAttribution,
    Progress,
    Score,
    Target,
    _Call,
    _call_of,
    _numpy,
    _targets,
    attribute_input,
    gates_overridden,
    logits_score,
)
from fmw.device import model_device
from fmw.errors import FMWError
from fmw.models.tasks import TASKS, most_likely, postprocessed
from fmw.sites import GateReplacement, ProbeResult, probe, select_sites
from fmw.sites.inputs import ModelInputs

__all__ = [
    "ALL_SITES",
    "WEIGHTING_ON",
    "AblationStep",
    "AttributionRow",
    "PredictionRow",
    "TaskChangeRow",
    "TaskWeightingOff",
    "WeightingOffComparison",
    "ablation_steps",
    "attributions_with_weighting_off",
    "compare_task_weighting_off",
    "compare_weighting_off",
]

WEIGHTING_ON = "weighting on"
ALL_SITES = "all sites"


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
    """Weighting on, then each of ``sites`` switched off alone, then all of them off.

    Args:
        model: the model (its sites found by ``fmw.find_sites`` or a probe before).
        sites: the sites to switch off (default: every site that has a gate).
        mean_gates: per site, per stage, the gate to put in place (default: every gate at 1).

    Returns:
        The steps, "weighting on" first and "all sites" last.

    Raises:
        ValueError: no site with a gate; KeyError: a chosen site has no mean gate.

    Examples:
        >>> [step.label for step in ablation_steps(model)]
        ['weighting on', 'stages.0.weighting', 'stages.1.weighting', 'stages.2.weighting', 'all sites']
    """
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
    """A classifier's predictions with weighting on, with each site switched off alone and with all off.

    Args:
        model: the classifier (``model.eval()`` first).
        inputs: its input as it takes it.
        class_names: the names of its classes.
        sites: the sites to switch off (default: every site that has a gate).
        mean_gates: gates to put in place (default: 1), e.g.
            ``fmw.analysis.stats.GateStatistics.replacements()``, resized to this input's positions.
        target: the class whose probability is followed (default: the one predicted with weighting on).
        top_k: how many classes each row keeps.
        score: the model's output -> logits (N, classes).

    Returns:
        One ``PredictionRow`` per ``ablation_steps`` step; ``.table(image)`` puts them in words.

    Examples:
        >>> comparison = compare_weighting_off(model.eval(), batch, class_names)
        >>> comparison.table(0)[-1]["prediction changed"]  # all sites off
    """
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
                top_indices=most_likely(probabilities, k)[1].cpu().numpy(),
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
    """``attribute_input`` under every ``ablation_steps`` step, for one fixed target per image.

    Args:
        model, inputs, sites, mean_gates: as for ``compare_weighting_off``.
        method: an input method of ``fmw.analysis.attribution.ATTRIBUTION_METHODS``.
        target: the class explained (default: the one predicted with weighting on), the same in every step.
        score: the model's output -> scores (N, K).
        progress: sees the fraction of all steps done.
        options: go to ``attribute_input`` (``n_steps``, ``baseline``, ...).

    Returns:
        One ``AttributionRow`` per step, "weighting on" first.

    Examples:
        >>> rows = attributions_with_weighting_off(model.eval(), batch, "saliency")
        >>> {row.label: row.attribution.maps[0].sum() for row in rows}
    """
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
    """Any model's output with each chosen site switched off alone and with all off, compared with
    weighting on's as its task measures it.

    Args:
        model, inputs, sites, mean_gates: as for ``compare_weighting_off``.
        task: one of ``fmw.models.tasks.TASKS``: top-1 changes (classification), pixels changed and
            per-class IoU (segmentation), boxes lost, gained and moved and the score change
            (detection), the relative change of each output tensor (other).
        postprocess: turns the raw output into the task's structure first (a YOLO-style head's maps
            into boxes).

    Returns:
        One ``TaskChangeRow`` per step off; ``.table()`` lists them.

    Examples:
        >>> handle = fmw.load_model("torchvision:fcos_resnet50_fpn")
        >>> compare_task_weighting_off(handle.model, [image], handle.task).table()
    """
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
