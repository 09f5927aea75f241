"""What a model's output means, by task: classification, segmentation, detection or other, an open
registry (``TASKS``; a new task is a new entry), beside the models so that opening one infers it.
Each task recognises its output, turns it into predictions per image, picks an attribution score
and compares outputs with weighting on and off.

Structures: classification, logits (N, classes); segmentation, logits (N, classes, H, W) or a dict
holding them under "out" (torchvision's segmenters); detection, a list of one dict per image with
"boxes" (K, 4) x1 y1 x2 y2, "labels" (K,) and "scores" (K,) (torchvision's detectors; a YOLO-style
model's head maps after its postprocess function); other, anything else, shown as its structure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from fmw.errors import FMWError
from fmw.sites.inputs import describe, tensors_of

__all__ = [
    "TASKS",
    "Detection",
    "OtherOutput",
    "Prediction",
    "Segmentation",
    "Task",
    "TopK",
    "check_task",
    "infer_task",
    "most_likely",
    "postprocessed",
    "segmentation_logits",
    "task_score",
]

MATCH_IOU = 0.5  # a box off matches a box on at this IoU or more (COCO's AP50 threshold)
MOVED_IOU = 0.9  # a matched box below this IoU moved


def segmentation_logits(output: Any) -> torch.Tensor | None:
    """A segmenter's logits (N, classes, H, W): the output itself or its "out"; None otherwise."""
    if isinstance(output, Mapping):
        output = output.get("out")
    return output if isinstance(output, torch.Tensor) and output.dim() == 4 else None


def _is_detection(output: Any) -> bool:
    return (
        isinstance(output, (list, tuple))
        and len(output) > 0
        and all(isinstance(item, Mapping) and {"boxes", "labels", "scores"} <= set(item) for item in output)
    )


def _name(class_names: Sequence[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else f"class {index}"


@dataclass
class TopK:
    """A classifier's predictions for one image: (class index, name, probability), most likely first."""

    task = "classification"
    classes: list[tuple[int, str, float]]

    def lines(self) -> list[str]:
        return [f"{name} {probability:.1%}" for _, name, probability in self.classes]


@dataclass
class Segmentation:
    """A segmenter's prediction for one image: the class of every pixel (H, W) and each predicted
    class's share of the image, largest first."""

    task = "segmentation"
    mask: np.ndarray
    shares: list[tuple[int, str, float]]

    def lines(self) -> list[str]:
        return [f"{name} {share:.1%} of the pixels" for _, name, share in self.shares]


@dataclass
class Detection:
    """A detector's boxes for one image at or above ``threshold``: (K, 4) x1 y1 x2 y2 in the
    coordinates of the image the model was given, labels, names and scores, best first."""

    task = "detection"
    boxes: np.ndarray
    labels: np.ndarray
    names: list[str]
    scores: np.ndarray
    threshold: float

    def at_least(self, threshold: float) -> Detection:
        """The boxes scoring ``threshold`` or more (a dashboard's threshold control over one analysis)."""
        keep = self.scores >= threshold
        names = [name for name, kept in zip(self.names, keep, strict=True) if kept]
        return Detection(self.boxes[keep], self.labels[keep], names, self.scores[keep], threshold)

    def lines(self) -> list[str]:
        if not len(self.scores):
            return [f"no box scored {self.threshold:.0%} or more"]
        return [
            f"{name} {score:.1%} at ({', '.join(f'{v:.0f}' for v in box)})"
            for name, score, box in zip(self.names, self.scores, self.boxes, strict=True)
        ]


@dataclass
class OtherOutput:
    """An output fmw does not interpret: its structure and shapes."""

    task = "other"
    structure: str
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [self.structure]


Prediction = TopK | Segmentation | Detection | OtherOutput


def most_likely(probabilities: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest of ``probabilities`` (..., K) along the last axis and their class indices,
    most likely first; all K when there are fewer. fmw's one top-k: predictions, the notebook and
    the weighting-off comparison read it."""
    values, indices = probabilities.topk(min(k, probabilities.shape[-1]), dim=-1)
    return values, indices


def _classify(output: Any, image: int, class_names: Sequence[str], top_k: int, threshold: float) -> TopK:
    values, indices = most_likely(output[image].float().softmax(0), top_k)
    return TopK([(int(i), _name(class_names, int(i)), float(p)) for p, i in zip(values, indices, strict=True)])


def _segment(output: Any, image: int, class_names: Sequence[str], top_k: int, threshold: float) -> Segmentation:
    logits = segmentation_logits(output)
    assert logits is not None
    mask = logits[image].argmax(0).cpu().numpy()
    counts = np.bincount(mask.ravel(), minlength=logits.shape[1])
    order = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    return Segmentation(mask, [(k, _name(class_names, k), float(counts[k] / mask.size)) for k in order])


def _detect(output: Any, image: int, class_names: Sequence[str], top_k: int, threshold: float) -> Detection:
    found = output[image]
    scores = found["scores"].detach().float().cpu()
    keep = torch.nonzero(scores >= threshold).flatten()
    keep = keep[scores[keep].argsort(descending=True, stable=True)]
    labels = found["labels"].detach().cpu()[keep].numpy().astype(np.int64)
    return Detection(
        boxes=found["boxes"].detach().float().cpu()[keep].numpy(),
        labels=labels,
        names=[_name(class_names, int(label)) for label in labels],
        scores=scores[keep].numpy(),
        threshold=threshold,
    )


def _other(output: Any, image: int, class_names: Sequence[str], top_k: int, threshold: float) -> OtherOutput:
    return OtherOutput(describe(output), [tuple(tensor.shape) for tensor in tensors_of(output)])


def _relative_changes(on: Any, off: Any) -> dict[str, float]:
    """Per output tensor (in ``tensors_of`` order): ||off - on|| / ||on||."""
    changes = {}
    for position, (a, b) in enumerate(zip(tensors_of(on), tensors_of(off), strict=True)):
        a, b = a.detach().double(), b.detach().double()
        if a.shape != b.shape or not a.is_floating_point():
            changes[f"tensor {position}"] = float(not torch.equal(a, b))
            continue
        norm = float(a.norm())
        changes[f"tensor {position}"] = float((b - a).norm()) / norm if norm > 0 else float((b - a).norm())
    return changes


def _compare_classification(on: Any, off: Any) -> dict[str, float]:
    p_on, p_off = on.float().softmax(1), off.float().softmax(1)
    top = p_on.argmax(1, keepdim=True)
    return {
        "top-1 changed": float((p_off.argmax(1) != top[:, 0]).float().mean()),
        "p(top-1) change": float((p_off.gather(1, top) - p_on.gather(1, top)).mean()),
    }


def _compare_segmentation(on: Any, off: Any) -> dict[str, float]:
    mask_on, mask_off = segmentation_logits(on).argmax(1), segmentation_logits(off).argmax(1)  # type: ignore[union-attr]
    result = {"pixels changed": float((mask_on != mask_off).float().mean())}
    for k in torch.unique(torch.cat([mask_on.flatten(), mask_off.flatten()])).tolist():
        a, b = mask_on == k, mask_off == k
        result[f"IoU class {k}"] = float((a & b).sum()) / float((a | b).sum())
    return result


def _compare_detection(on: Any, off: Any) -> dict[str, float]:
    """Greedy IoU matching per image (best score first, same label, IoU >= ``MATCH_IOU``): boxes
    lost (on, unmatched), gained (off, unmatched), moved (matched, IoU < ``MOVED_IOU``), and the
    mean score change of the matched ones. Counts summed over the images."""
    lost = gained = moved = 0
    changes: list[float] = []
    for a, b in zip(on, off, strict=True):
        ious = box_iou(a["boxes"].float(), b["boxes"].float()) if len(a["boxes"]) and len(b["boxes"]) else None
        free = set(range(len(b["boxes"])))
        for i in a["scores"].argsort(descending=True).tolist():
            candidates = [j for j in free if ious is not None and a["labels"][i] == b["labels"][j]]
            best = max(candidates, key=lambda j: float(ious[i, j]), default=None)  # type: ignore[index]
            if best is None or float(ious[i, best]) < MATCH_IOU:  # type: ignore[index]
                lost += 1
                continue
            free.discard(best)
            moved += float(ious[i, best]) < MOVED_IOU  # type: ignore[index]
            changes.append(float(b["scores"][best] - a["scores"][i]))
        gained += len(free)
    return {
        "boxes lost": lost,
        "boxes gained": gained,
        "boxes moved": moved,
        "mean score change": float(np.mean(changes)) if changes else 0.0,
    }


@dataclass(frozen=True)
class Task:
    """One task: which outputs it ``accepts``, what it ``expects`` (in words), how it ``predicts``
    (output, image, class names, top-k, score threshold) and ``compares`` outputs with weighting
    on and off (a dict of named numbers)."""

    name: str
    accepts: Callable[[Any], bool]
    expects: str
    predicts: Callable[[Any, int, Sequence[str], int, float], Prediction]
    compares: Callable[[Any, Any], dict[str, float]]

    def predictions(
        self, output: Any, image: int = 0, class_names: Sequence[str] = (), top_k: int = 5, threshold: float = 0.5
    ) -> Prediction:
        return self.predicts(output, image, class_names, top_k, threshold)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "classification",
            lambda out: isinstance(out, torch.Tensor) and out.dim() == 2,
            "logits (N, classes)",
            _classify,
            _compare_classification,
        ),
        Task(
            "segmentation",
            lambda out: segmentation_logits(out) is not None,
            "logits (N, classes, H, W), or a dict holding them under 'out'",
            _segment,
            _compare_segmentation,
        ),
        Task(
            "detection",
            _is_detection,
            "a list of one dict per image with 'boxes' (K, 4), 'labels' (K,) and 'scores' (K,)",
            _detect,
            _compare_detection,
        ),
        Task("other", lambda out: True, "any output", _other, _relative_changes),
    )
}


def infer_task(output: Any) -> str:
    """The first task of ``TASKS`` whose structure ``output`` has ("other" takes anything)."""
    return next(name for name, task in TASKS.items() if task.accepts(output))


def check_task(task: str | None, output: Any, model: str = "the model") -> str:
    """``task`` when ``output`` has its structure, the inferred task when ``task`` is None; an
    ``FMWError`` saying what the output is and what to do otherwise."""
    inferred = infer_task(output)
    if task is None:
        return inferred
    if task not in TASKS:
        raise FMWError(f"unknown task {task!r}; give one of: {', '.join(TASKS)} (or leave it out to infer it)")
    if not TASKS[task].accepts(output):
        advice = (
            "; for a YOLO-style model whose head returns raw maps, give --postprocess FILE.py:FUNCTION "
            "turning them into boxes"
            if task == "detection"
            else ""
        )
        raise FMWError(
            f"{model} was given the task {task!r}, which expects {TASKS[task].expects}, but it returned "
            f'{describe(output)} (that reads as {inferred!r}). Give --task {inferred} (task = "{inferred}" in '
            f"fmw-models.toml, task={inferred!r} in Python) or leave the task out to infer it{advice}"
        )
    return task


def postprocessed(postprocess: Callable[[Any], Any] | None, output: Any, name: str = "the postprocess function") -> Any:
    """``postprocess(output)``, refused with an ``FMWError`` when it raises or does not return
    detection's structure; ``output`` as it is without one."""
    if postprocess is None:
        return output
    try:
        boxes = postprocess(output)
    except Exception as error:
        raise FMWError(
            f"{name} raised {type(error).__name__}: {str(error).strip()[:200]} on the model's output "
            f"{describe(output)}; fix it, or leave --postprocess out to show the output as 'other'"
        ) from None
    if not _is_detection(boxes):
        raise FMWError(
            f"{name} returned {describe(boxes)}; it must return {TASKS['detection'].expects} "
            "(x1, y1, x2, y2 in input pixels), as torchvision's detectors do"
        )
    return boxes


def task_score(task: str, reference: Any, *, box: int = 0, tensor: int = 0) -> Callable[[Any], torch.Tensor]:
    """An attribution score (output -> (N, K)) for ``task``, fixed by the ``reference`` output (the
    pass with weighting on): classification, the logits; segmentation, per class the sum of its
    logits over the pixels predicted as that class in ``reference`` (target: the class); detection,
    the score of the box matching ``reference``'s box number ``box`` (same label, best IoU, 0 when
    none), one column; other, the sum of output tensor number ``tensor`` per image, one column."""
    if task == "classification":
        return lambda output: output
    if task == "segmentation":
        logits = segmentation_logits(reference)
        assert logits is not None
        regions = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)

        def region_sum(output: Any) -> torch.Tensor:
            current = segmentation_logits(output)
            assert current is not None
            return (current * regions.to(current.device).repeat(current.shape[0] // regions.shape[0], 1, 1, 1)).sum(
                (2, 3)
            )

        return region_sum
    if task == "detection":
        chosen = [(image["boxes"][box : box + 1].float(), image["labels"][box : box + 1]) for image in reference]
        if any(len(b) == 0 for b, _ in chosen):
            raise FMWError(f"the reference output has no box number {box} in every image; choose a box it has")

        def box_score(output: Any) -> torch.Tensor:
            scores = []
            for position, found in enumerate(output):
                target, label = chosen[position % len(chosen)]
                same = found["labels"] == label.to(found["labels"].device)
                if not bool(same.any()):
                    scores.append(found["scores"].sum() * 0)
                    continue
                ious = box_iou(target.to(found["boxes"].device), found["boxes"].float())[0].masked_fill(~same, -1)
                scores.append(found["scores"][ious.argmax()])
            return torch.stack(scores).view(-1, 1)

        return box_score

    def tensor_sum(output: Any) -> torch.Tensor:
        chosen = tensors_of(output)[tensor]
        return chosen.flatten(1).sum(1, keepdim=True)

    return tensor_sum
