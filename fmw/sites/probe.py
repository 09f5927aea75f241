"""The probe: one forward pass that finds every weighting site of a model by what it computes and
records, at each, the map that was weighted (before), the gate(s) and the product (after), plus
the logits; ``override_gates`` replaces gates within a block; ``find_sites`` lists a model's sites.

A ``TorchFunctionMode`` sees the multiplications (``fmw.sites.mode``); one ``Observation``
(``fmw.sites.observer``) per call decides what each is. What a call puts on the model (forward
wrappers on the modules that made products and their children, forward hooks on declared sites) is
removed inside one ``try/finally`` and acts only in the calling thread, so several threads may
probe one shared model at once without seeing each other's tensors. The sites found are remembered
per model (weakly) until its module tree changes, so that ``override_gates`` can name them before
a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from fmw.device import model_device
from fmw.errors import FMWError
from fmw.sites.grouping import SiteDraft, group_products
from fmw.sites.index import ModelIndex, StageKey, model_index, refuse_unobservable
from fmw.sites.inputs import Inputs, ModelInputs, as_inputs, describe, map_tensors, tensors_of
from fmw.sites.mode import observing, suspended
from fmw.sites.observer import Observation
from fmw.sites.products import Layout
from fmw.sites.recording import Keeper, ObservedProduct
from fmw.sites.spec import SiteSpec

__all__ = [
    "NOTHING_FOUND",
    "GateReplacement",
    "ProbeResult",
    "SiteRecord",
    "StageRecord",
    "find_sites",
    "observation_points",
    "override_gates",
    "probe",
    "select_sites",
]

NOTHING_FOUND = (
    "fmw found no feature-map weighting in this model. It looks for products of a 4-D feature map "
    "x (N, C, H, W) with a gate that broadcasts over the positions (a channel gate, (N|1, C, 1, 1)) "
    "or over the channels (a spatial gate, (N|1, 1, H, W)), however written (x * g, torch.mul, "
    "x *= g, ...). Products whose both sides vary over channels and positions (x * sigmoid(x), "
    "GLU, masks) are not weighting, nor are tensors other than 4-D feature maps (a ViT's tokens)."
)


@dataclass
class StageRecord:
    """One gate of a site in one pass: the stage's ``name`` ("channel", "coord_h", "channel_2"),
    its ``layout`` (a key of ``fmw.sites.layouts.LAYOUTS``), the ``gate`` in that layout's contract
    shape in the frame of the site's ``before`` map, and ``frame_note``: None when the gate is
    shown as applied to that map, else what fmw could not map back (or how it shows the gate)."""

    name: str
    layout: Layout
    gate: torch.Tensor
    frame_note: str | None = None


@dataclass
class SiteRecord:
    """What one weighting site did in one forward pass: ``before`` the first map it weighted,
    ``stages`` in the order applied, ``after`` its last product (for parallel stages, such as
    scSE's, the last stage's product). All detached, and each record's own: the model's tensors
    where the model left them as they were, else copies; after ``probe(..., maps=False)``
    ``before`` and ``after`` are meta tensors (shape and dtype only)."""

    name: str
    kind: str
    before: torch.Tensor
    after: torch.Tensor
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def gates(self) -> dict[str, torch.Tensor]:
        """The gates by stage name, in order (a read-only view of ``stages``)."""
        return {stage.name: stage.gate for stage in self.stages}

    @property
    def frame_notes(self) -> list[str]:
        """The stages' frame notes, each once, in order."""
        return list(dict.fromkeys(stage.frame_note for stage in self.stages if stage.frame_note))


@dataclass
class ProbeResult:
    """One probed pass: the model's ``output`` as it returned it (a tensor, or tuples, lists and
    dicts of them; detached, on the CPU unless ``keep_on_device``) and the ``sites`` in forward order."""

    output: Any
    sites: list[SiteRecord]

    @property
    def logits(self) -> torch.Tensor:
        """The output when it is one tensor (a classifier's logits); else an ``FMWError``."""
        if isinstance(self.output, torch.Tensor):
            return self.output
        raise FMWError(
            f"the model returned {describe(self.output)}, not one tensor of logits; read ProbeResult.output "
            "for its output as it is (a detector's boxes, a segmenter's dict of maps)"
        )

    def site(self, name: str) -> SiteRecord:
        for record in self.sites:
            if record.name == name:
                return record
        raise KeyError(f"no weighting site named {name!r}; sites: {', '.join(r.name for r in self.sites)}")

    @property
    def names(self) -> list[str]:
        return [record.name for record in self.sites]

    @property
    def message(self) -> str | None:
        """What to tell a user when nothing was found (``NOTHING_FOUND``), else None."""
        return None if self.sites else NOTHING_FOUND


def _remembered(model: nn.Module) -> list[SiteSpec] | None:
    """The sites last found in ``model``, unless its module tree changed since."""
    sites: list[SiteSpec] | None = model_index(model).sites
    return sites


def _remember(model: nn.Module, sites: list[SiteSpec]) -> None:
    model_index(model).sites = sites


def _watched(index: ModelIndex, sites: list[SiteSpec] | None) -> list[nn.Module] | None:
    """The modules whose forwards made the products of ``sites`` (None: watch everything)."""
    if sites is None:
        return None
    makers = dict.fromkeys(stage.maker for site in sites for stage in site.stages)
    return [index.module(name) for name in makers]


def _run(
    model: nn.Module,
    inputs: Inputs,
    keep: Keeper | None,
    *,
    discover: bool = False,
    index: ModelIndex | None = None,
) -> tuple[Any, list[SiteDraft]]:
    """One observed pass: every operation watched when ``discover``, when the model's sites are
    not known yet, or when some gate was mapped back from a rearranged frame for inputs of other
    shapes, else only those inside the modules that made its products last time (``index``: the
    model's, when the caller has it)."""
    known = index if index is not None else model_index(model)
    shapes = tuple(tuple(tensor.shape) for tensor in tensors_of((inputs.args, inputs.kwargs)))
    discover = discover or known.sites is None or known.frame_inputs not in (None, shapes)
    observation = Observation(model, record=keep, known_index=known, discover=discover)
    within = None if discover else _watched(observation.index, observation.index.sites)
    with observing(observation, within=within), torch.no_grad():
        observation.start_pass()
        output = inputs.call(model)
    if discover:
        observation.finish(tensors_of(output))
        mapped = any(decision.frame is not None for decision in (known.decisions or {}).values())
        known.frame_inputs = shapes if mapped else None
    drafts = group_products(observation.index, observation.products)
    observation.index.sites = [draft.spec for draft in drafts]
    return output, drafts


def default_example(model: nn.Module) -> torch.Tensor:
    """The input ``find_sites`` runs when it has none: one image of the fmw family's size, else one
    3x224x224 image (the size of torchvision's and timm's ImageNet models)."""
    config = getattr(model, "config", None)
    channels = getattr(config, "in_channels", 3)
    side = 32 if config is not None and hasattr(config, "minimum_input_size") else 224
    return torch.zeros(1, channels, side, side, device=model_device(model))


def find_sites(model: nn.Module, example: ModelInputs | None = None, *, rediscover: bool = False) -> list[SiteSpec]:
    """Every weighting site of ``model``, in forward order.

    The sites its last probe found; when it has not been probed (or its modules changed since), or
    with ``rediscover``, those one forward pass on ``example`` finds, every operation watched. Sites
    depend on the computation, so a model whose forward branches on its input may show other sites
    for other inputs.

    Args:
        model: any ``nn.Module`` whose forward runs in Python.
        example: an input ``probe`` takes (default: ``default_example(model)``, one image of the
            fmw family's size, else one 3x224x224 image).
        rediscover: run the discovering pass even when the sites are known.

    Returns:
        A ``SiteSpec`` per site: ``name``, ``kind``, ``module`` and ``stages`` (each a
        ``StageSpec``: ``name``, ``layout``, whether the gate is ``static``).

    Raises:
        FMWError: when the model cannot run on the example (the message says what to pass).

    Example:
        >>> from fmw.models import build_model
        >>> from fmw.sites import find_sites
        >>> [(site.name, [stage.layout for stage in site.stages]) for site in find_sites(build_model(weighting="eca"))]
        [('stages.0.weighting', ['channel']), ('stages.1.weighting', ['channel']), ('stages.2.weighting', ['channel'])]
    """
    remembered = None if rediscover else _remembered(model)
    if remembered is not None:
        return remembered
    refuse_unobservable(model)
    call = as_inputs(default_example(model) if example is None else example).to(model_device(model))
    try:
        _, drafts = _run(model, call, keep=None, discover=True)
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError, KeyError) as error:
        raise FMWError(
            f"fmw could not run the model once to find its weighting sites on the input "
            f"{call.describe()} ({type(error).__name__}: {str(error).strip()[:200]}); probe it on an "
            "input it accepts first (fmw.probe(model, images)) or pass find_sites(model, example=...)"
        ) from None
    return [draft.spec for draft in drafts]


def _check_names(wanted: Iterable[str], known: Iterable[str]) -> set[str]:
    """``wanted`` as a set, or ``KeyError`` naming the unknown ones and listing the known."""
    wanted, known = list(wanted), set(known)
    missing = [name for name in wanted if name not in known]
    if missing:
        raise KeyError(f"no weighting site named {', '.join(map(repr, missing))}; sites: {', '.join(sorted(known))}")
    return set(wanted)


def select_sites(model: nn.Module, names: Iterable[str] | None = None) -> list[SiteSpec]:
    """The model's sites, or the named subset (unknown names raise ``KeyError`` listing the known)."""
    sites = list(find_sites(model))
    if names is None:
        return sites
    chosen = _check_names(names, (site.name for site in sites))
    return [site for site in sites if site.name in chosen]


GateReplacement = float | torch.Tensor | Mapping[str, float | torch.Tensor]


def _stage_keys(sites: Iterable[SiteSpec]) -> dict[StageKey, tuple[str, str]]:
    return {(stage.maker, stage.ordinal): (site.name, stage.name) for site in sites for stage in site.stages}


def _discovering_first(model: nn.Module) -> RemovableHandle:
    """A hook that, before a pass of ``model`` whose products discovery has not judged yet (or
    judged for inputs of other shapes, where it mapped a frame), runs one discovering pass on the
    same input, unobserved by the caller's observation, so that the pass itself replaces only
    weighting products."""
    running = [False]

    def discover(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        index = model_index(model)
        shapes = tuple(tuple(tensor.shape) for tensor in tensors_of((args, kwargs)))
        if running[0] or (index.decisions is not None and index.frame_inputs in (None, shapes)):
            return
        running[0] = True
        try:
            with suspended():
                _run(model, Inputs(*args, **kwargs), None, discover=True, index=index)
        finally:
            running[0] = False

    return model.register_forward_pre_hook(discover, with_kwargs=True)


@contextmanager
def override_gates(
    model: nn.Module,
    replacements: Mapping[str, GateReplacement] | None = None,
    *,
    value: float = 1.0,
) -> Iterator[list[SiteSpec]]:
    """Within the block, replace gates with constants (for the calling thread's forward passes).

    With ``value`` 1.0 (the default) every weighted map passes through bit-identical: the model
    computes what it would with its multiplications deleted. In-place products are replaced in
    place. Called on a model not yet probed, it first runs one discovering pass on the input of its
    first pass, so that it never replaces a normalisation's scale or a self-gating activation.
    Sites declared with ``declare_site`` are shown, not replaced.

    Args:
        model: any ``nn.Module`` whose forward runs in Python.
        replacements: None to replace every gate by ``value``; else site name -> replacement: a
            number, a tensor in the stage's recorded layout (e.g. a dataset-mean gate of shape
            (1, C, 1, 1)), or a mapping from stage name ("channel", "spatial", ...) to either.
            Unknown site names raise ``KeyError`` listing the known ones.
        value: the constant every gate becomes when ``replacements`` is None.

    Yields:
        The sites replaced: with ``replacements`` None, those the model's last probe found, brought
        up to date by every pass within the block.

    Example:
        >>> import torch
        >>> from fmw.models import build_model
        >>> from fmw.sites import override_gates
        >>> model, x = build_model(weighting="cbam").eval(), torch.rand(1, 3, 32, 32)
        >>> with override_gates(model), torch.no_grad():  # weighting switched off
        ...     off = model(x)
        >>> with override_gates(model, {"stages.0.weighting": {"spatial": 0.5}}) as sites, torch.no_grad():
        ...     half = model(x)
        >>> [site.name for site in sites], tuple(off.shape)
        (['stages.0.weighting'], (1, 10))
    """
    if replacements is None:  # every product: the sites are found on the first pass's own input
        sites = list(_remembered(model) or [])

        def found(products: list[ObservedProduct]) -> None:
            sites[:] = [draft.spec for draft in group_products(model_index(model), products)]
            _remember(model, list(sites))

        observation = Observation(model, fill=lambda key, layout: value, finished=found)
        discovery = _discovering_first(model)
        try:
            with observing(observation, per_pass=True, within=_watched(observation.index, observation.index.sites)):
                yield sites
        finally:
            discovery.remove()
        return
    sites = select_sites(model, replacements.keys())
    keys = _stage_keys(sites)

    def fill(key: StageKey, layout: Layout) -> float | torch.Tensor | None:
        if key not in keys:
            return None
        site, stage = keys[key]
        replacement = replacements[site]
        return replacement.get(stage) if isinstance(replacement, Mapping) else replacement

    with observing(Observation(model, fill=fill), per_pass=True, within=_watched(model_index(model), sites)):
        yield sites


@contextmanager
def observation_points(model: nn.Module, site: str) -> Iterator[tuple[nn.Module, nn.Module]]:
    """Within the block, the calling thread's passes send ``site``'s first weighted map through the
    first identity module yielded and its last product through the second, so that methods that
    hook a module (captum's layer attributions) act exactly on the site's two sides."""
    (spec,) = select_sites(model, [site])
    if not spec.stages:
        raise ValueError(f"site {site!r} applies no gate, so it has no weighted map to attribute")
    before, after = nn.Identity(), nn.Identity()
    first, last = spec.stages[0], spec.stages[-1]
    points: dict[StageKey, tuple[nn.Module | None, nn.Module | None]] = {(first.maker, first.ordinal): (before, None)}
    last_key = (last.maker, last.ordinal)
    points[last_key] = (points.get(last_key, (None, None))[0], after)
    with observing(Observation(model, points=points), per_pass=True, within=_watched(model_index(model), [spec])):
        yield before, after


def probe(
    model: nn.Module,
    images: ModelInputs,
    *,
    sites: Iterable[str] | None = None,
    keep_on_device: bool = False,
    maps: bool = True,
) -> ProbeResult:
    """Run ``model`` once on ``images`` and record every weighting site.

    Records come in forward order (the order of each site's first product); ``after`` is a copy of
    the very tensor the model went on with, ``before`` a copy of the map as it was multiplied, gates
    in the contract's layout. The model runs as it is (call ``model.eval()`` first for inference
    behaviour), without gradients. The first probe of a model watches every operation (discovery);
    later ones only the modules that made its products. A model with no weighting gives no records
    (``ProbeResult.message`` says what fmw looks for).

    Args:
        model: any ``nn.Module`` whose forward runs in Python (TorchScript and ``torch.compile``d
            models are refused with a message).
        images: the model's input as it takes it: a batch (N, C, H, W), a list of image tensors
            (torchvision's detectors), or ``Inputs(*args, **kwargs)`` for any other call.
        sites: record only these sites (by name; an unknown name raises ``KeyError`` listing the
            known ones). Default: all.
        keep_on_device: leave the recorded tensors and the output on the model's device instead of
            moving them to the CPU.
        maps: with False only the gates (and the output) are recorded: ``before`` and ``after`` are
            meta tensors (shape and dtype, no values), so that a loop that needs only gates (gate
            statistics) holds no feature map beyond where a plain pass frees it.

    Returns:
        A ``ProbeResult``: ``sites``, a ``SiteRecord`` per site (``name``, ``kind``, ``before``,
        ``after``, ``stages``: each stage's ``name``, ``layout`` and ``gate``), and ``output``, the
        model's output as it returned it (``.logits`` when it is one tensor).

    Example:
        >>> import torch
        >>> from fmw.models import build_model
        >>> from fmw.sites import probe
        >>> model = build_model(weighting="cbam").eval()
        >>> result = probe(model, torch.rand(2, 3, 32, 32))
        >>> [(record.name, record.kind) for record in result.sites]
        [('stages.0.weighting', 'cbam'), ('stages.1.weighting', 'cbam'), ('stages.2.weighting', 'cbam')]
        >>> first = result.sites[0]
        >>> tuple(first.before.shape), [(stage.name, stage.layout, tuple(stage.gate.shape)) for stage in first.stages]
        ((2, 64, 15, 15), [('channel', 'channel', (2, 64, 1, 1)), ('spatial', 'spatial', (2, 1, 15, 15))])
        >>> tuple(result.logits.shape)
        (2, 10)
    """
    call = as_inputs(images)
    refuse_unobservable(model)
    call = call.to(model_device(model))

    index = model_index(model)
    keeper = Keeper(keep_on_device, copy_all=index.copy_records, maps=maps)
    output, drafts = _run(model, call, keeper, index=index)
    if keeper.changed:  # the model overwrote a held tensor unseen: run again copying all, and from now on
        index.copy_records = True
        keeper = Keeper(keep_on_device, copy_all=True, maps=maps)
        output, drafts = _run(model, call, keeper, index=index)
    records, seen = [], set()

    def settled(tensor: torch.Tensor | None) -> torch.Tensor:
        """Each record owns its tensors: one the model passed from site to site is copied."""
        assert tensor is not None
        kept = keeper.settled(tensor)
        if kept.is_meta:
            return kept
        if id(kept) in seen:
            return keeper.copy(kept)
        seen.add(id(kept))
        return kept

    for draft in drafts:
        first, last = draft.products[0], draft.products[-1]
        stages = [
            StageRecord(stage.name, stage.layout, product.gate, product.note)
            for stage, product in zip(draft.spec.stages, draft.products, strict=False)  # a placeholder has none
            if product.gate is not None
        ]
        before, after = settled(first.before), settled(last.after)
        records.append(SiteRecord(draft.spec.name, draft.spec.kind, before, after, stages))
    if sites is not None:
        chosen = _check_names(sites, (record.name for record in records))
        records = [record for record in records if record.name in chosen]
    return ProbeResult(output=map_tensors(output, lambda tensor: keeper.settled(tensor.detach())), sites=records)
