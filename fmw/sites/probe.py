"""The probe: one forward pass that records, at every weighting site, the input (before), the
gate(s) and the output (after), plus the logits; and ``override_gates`` to switch gates off.

Hooks are registered and removed inside one ``try/finally``. Each hook only acts for the thread
that registered it, so several threads may probe (or ablate) one shared model at the same time
without seeing each other's tensors and without a global lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from fmw.device import model_device
from fmw.sites.finding import find_sites
from fmw.sites.spec import SiteSpec

__all__ = ["ProbeResult", "SiteRecord", "override_gates", "probe", "select_sites"]


@dataclass
class SiteRecord:
    """What one weighting site did in one forward pass (all tensors detached)."""

    name: str
    kind: str
    before: torch.Tensor
    after: torch.Tensor
    gates: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ProbeResult:
    logits: torch.Tensor
    sites: list[SiteRecord]

    def site(self, name: str) -> SiteRecord:
        for record in self.sites:
            if record.name == name:
                return record
        raise KeyError(f"no weighting site named {name!r}; sites: {', '.join(r.name for r in self.sites)}")

    @property
    def names(self) -> list[str]:
        return [record.name for record in self.sites]


def _only_in_thread(owner: int, hook: Callable) -> Callable:
    """Wrap a hook so it does nothing when a thread other than ``owner`` runs the model."""

    def guarded(*args):
        if threading.get_ident() != owner:
            return None
        return hook(*args)

    return guarded


_SITES: weakref.WeakKeyDictionary[nn.Module, tuple[list[weakref.ref], list[SiteSpec]]] = weakref.WeakKeyDictionary()
_SITES_LOCK = threading.Lock()


def _module_tree(model: nn.Module) -> list[nn.Module]:
    """Every module under ``model`` in a fixed order; a plain walk over ``_modules``, several
    times faster than ``model.modules()``, which matters when a small input is probed."""
    modules, stack = [], [model]
    while stack:
        module = stack.pop()
        modules.append(module)
        stack.extend(child for child in module._modules.values() if child is not None)
    return modules


def _sites_of(model: nn.Module) -> list[SiteSpec]:
    """``find_sites(model)``, remembered per model until its module tree changes (a submodule
    added, removed or replaced: the cached tree is compared module by module, by identity)."""
    descendants = _module_tree(model)[1:]  # weak references only: the cache must not keep models alive
    with _SITES_LOCK:
        cached = _SITES.get(model)
    if (
        cached is not None
        and len(cached[0]) == len(descendants)
        and all(reference() is module for reference, module in zip(cached[0], descendants))
    ):
        return cached[1]
    sites = find_sites(model)
    with _SITES_LOCK:
        _SITES[model] = ([weakref.ref(module) for module in descendants], sites)
    return sites


def select_sites(model: nn.Module, names: Iterable[str] | None = None) -> list[SiteSpec]:
    """The model's sites, or the named subset (unknown names raise ``KeyError`` listing the known)."""
    sites = list(_sites_of(model))
    if names is None:
        return sites
    wanted = list(names)
    known = {site.name for site in sites}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise KeyError(f"no weighting site named {', '.join(map(repr, missing))}; sites: {', '.join(sorted(known))}")
    return [site for site in sites if site.name in set(wanted)]


GateReplacement = float | torch.Tensor | Mapping[str, float | torch.Tensor]


@contextmanager
def override_gates(
    model: nn.Module,
    replacements: Mapping[str, GateReplacement] | None = None,
    *,
    value: float = 1.0,
) -> Iterator[list[SiteSpec]]:
    """Within the block, replace gates with constants: every site's gates with ``value`` (1.0 =
    weighting switched off) when ``replacements`` is None, else only the named sites'.

    A replacement is a number, a tensor broadcastable to the gate (e.g. a dataset-mean gate of
    shape (1, C, 1, 1)), or a mapping from stage name ("channel", "spatial") to either.
    Only the calling thread's forward passes are affected.
    """
    sites = select_sites(model, None if replacements is None else replacements.keys())
    owner = threading.get_ident()
    handles = []
    try:
        for site in sites:
            replacement = value if replacements is None else replacements[site.name]
            for stage, gate in site.gates.items():
                stage_value = replacement.get(stage, None) if isinstance(replacement, Mapping) else replacement
                if stage_value is None:
                    continue

                def replace(module, inputs, output, stage_value=stage_value):
                    fill = torch.as_tensor(stage_value, dtype=output.dtype, device=output.device)
                    if fill.dim() == 4 and output.dim() == 3:  # (N,1,C)-layout gates, e.g. timm's ECA
                        fill = fill.reshape(fill.shape[0], 1, -1)
                    return fill.expand_as(output).clone()

                handles.append(gate.module.register_forward_hook(_only_in_thread(owner, replace)))
        yield sites
    finally:
        for handle in handles:
            handle.remove()


def probe(
    model: nn.Module,
    images: torch.Tensor,
    *,
    sites: Iterable[str] | None = None,
    keep_on_device: bool = False,
) -> ProbeResult:
    """Run ``model`` once on ``images`` (N, C, H, W) and record every weighting site.

    Records come in the order the sites finished in the forward pass; ``after`` is a copy of
    the very tensor the site passed on, ``before`` a copy of what it received, gates in the
    contract's layout. Tensors are moved to the CPU unless ``keep_on_device``. The model runs
    as it is (call ``model.eval()`` first for inference behaviour), without gradients.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a 4-D tensor (N, C, H, W), got {shape}")
    chosen = select_sites(model, sites)
    images = images.to(model_device(model))

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        return tensor.clone() if keep_on_device else tensor.to("cpu", copy=True)

    owner = threading.get_ident()
    finished: list[SiteRecord] = []
    open_records: dict[str, list[SiteRecord]] = {}
    handles = []

    try:
        for site in chosen:

            def before_hook(module, inputs, site=site):
                record = SiteRecord(site.name, site.kind, before=keep(inputs[0]), after=torch.empty(0))
                open_records.setdefault(site.name, []).append(record)

            def after_hook(module, inputs, output, site=site):
                record = open_records[site.name].pop()
                record.after = keep(output)
                finished.append(record)

            handles.append(site.module.register_forward_pre_hook(_only_in_thread(owner, before_hook)))
            handles.append(site.module.register_forward_hook(_only_in_thread(owner, after_hook)))
            for stage, gate in site.gates.items():

                def gate_hook(module, inputs, output, site=site, stage=stage, gate=gate):
                    stack = open_records.get(site.name)
                    if stack:
                        stack[-1].gates[stage] = keep(gate.standard(output))

                handles.append(gate.module.register_forward_hook(_only_in_thread(owner, gate_hook)))
        with torch.no_grad():
            logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return ProbeResult(logits=keep(logits), sites=finished)
