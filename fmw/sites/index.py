"""A model's index: its modules by identity and by qualified name, its parameters and buffers,
the sites declared on it, and what discovery learnt of it (its sites, each product's decision,
the last grouping), remembered weakly per model while its module tree stays the same."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fmw.errors import FMWError
from fmw.sites.declared import Declaration, declaration, declarations_version
from fmw.sites.lineage import Decision
from fmw.sites.spec import SiteSpec

__all__ = ["Grouping", "ModelIndex", "StageKey", "model_index", "quiet_children", "refuse_unobservable", "walk"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

StageKey = tuple[str, int]  # (maker, ordinal)
# the last grouped pass: its products' signature, and each site with its products' positions
Grouping = tuple[tuple[object, ...], list[tuple[SiteSpec, list[int]]]]


def refuse_unobservable(model: nn.Module) -> None:
    """Raise for models whose forward does not run through Python in the calling thread
    (TorchScript, torch.compile, ``nn.DataParallel``)."""
    if isinstance(model, nn.DataParallel):
        raise FMWError(
            "this model is wrapped in nn.DataParallel, which runs copies of it in other threads, where a "
            "probe (which watches the calling thread only) cannot see their multiplications. Probe the "
            "wrapped network (model.module) on one device instead."
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise FMWError(
            "this is a TorchScript model: its forward runs outside Python, where fmw cannot see its "
            "multiplications. Probe the eager nn.Module it was scripted from."
        )
    if type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
        raise FMWError(
            "this model was compiled with torch.compile, whose generated code fmw cannot observe; "
            "probe the original module (model._orig_mod) instead."
        )


@dataclass
class IndexedModule:
    name: str
    candidate: bool  # may name a site (not a container, not the model itself)


@dataclass(eq=False)
class ModelIndex:
    """A model's modules by identity and by qualified name, and the sites its last pass showed;
    valid while its module tree is the same (compared module by module, by identity)."""

    tree: tuple[int, ...]  # ids of the walk below the model (``by_name`` keeps those modules alive)
    modules: dict[int, IndexedModule]
    by_name: dict[str, nn.Module]  # the model itself left out: the index must not keep it alive
    root: weakref.ref[nn.Module]
    tensors: dict[int, weakref.ref[torch.Tensor]]  # parameters and buffers: what does not depend on the input
    sites: list[SiteSpec] | None = None
    copy_records: bool = False  # the model overwrites tensors a probe records: copy them at once
    grouping: Grouping | None = None  # the last pass's products and their sites (``fmw.sites.grouping``)
    decisions: dict[StageKey, Decision] | None = None  # what discovery decided of each product
    frame_inputs: tuple[tuple[int, ...], ...] | None = None  # the input shapes discovery mapped frames for
    quiet: tuple[tuple[int, ...], list[nn.Module]] | None = None  # ``quiet_children``'s last answer
    _declared: tuple[int, list[tuple[nn.Module, Declaration]]] | None = None

    @property
    def declared(self) -> list[tuple[nn.Module, Declaration]]:
        """The modules of the model with a declared site (``fmw.sites.declared``), each once."""
        version = declarations_version()
        if self._declared is None or self._declared[0] != version:
            root = self.root()
            modules = [] if root is None else [root, *self.by_name.values()]
            found = {id(module): (module, declaration(module)) for module in modules}
            self._declared = (version, [(module, declared) for module, declared in found.values() if declared])
        return self._declared[1]

    def module(self, name: str) -> nn.Module:
        model = self.root() if name == "" else self.by_name[name]
        assert model is not None, "the index outlived its model"
        return model

    def quiet_children(self, makers: Sequence[nn.Module]) -> list[nn.Module]:
        """``quiet_children(makers)``, remembered for the makers of the last call."""
        key = tuple(map(id, makers))
        if self.quiet is None or self.quiet[0] != key:
            self.quiet = (key, quiet_children(makers))
        return self.quiet[1]


_INDEXES: weakref.WeakKeyDictionary[nn.Module, ModelIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def walk(model: nn.Module) -> list[nn.Module | None]:
    """Every module under ``model`` (itself first, breadth first; an unset child as None), by a
    plain walk over ``_modules``: several times faster than ``named_modules()``, which matters
    when a small input is probed."""
    modules: list[nn.Module | None] = [model]
    position = 0
    while position < len(modules):
        module = modules[position]
        if module is not None and module._modules:
            modules.extend(module._modules.values())
        position += 1
    return modules


def model_index(model: nn.Module) -> ModelIndex:
    """``model``'s index, remembered weakly (it never keeps a model alive). A remembered index is
    reused while the walk below the model meets the same module objects in the same places; an id
    comparison suffices because the index holds those modules, so no id can be reused meanwhile."""
    modules = walk(model)
    tree = tuple(map(id, modules[1:]))
    with _INDEXES_LOCK:
        cached = _INDEXES.get(model)
    if cached is not None and cached.tree == tree:
        return cached
    named: dict[int, IndexedModule] = {}
    by_name: dict[str, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) not in named:
            named[id(module)] = IndexedModule(name, bool(name) and not isinstance(module, _CONTAINERS))
        if name:
            by_name[name] = module
    tensors = {id(tensor): weakref.ref(tensor) for tensor in itertools.chain(model.parameters(), model.buffers())}
    index = ModelIndex(tree, named, by_name, weakref.ref(model), tensors)
    with _INDEXES_LOCK:
        _INDEXES[model] = index
    return index


def quiet_children(modules: Sequence[nn.Module]) -> list[nn.Module]:
    """The modules below ``modules`` in which no product was made: every child of one of them that
    is not one of them and has none of them below it (a gate's MLP, its convolutions, its
    activation), and, below a child that has, the same again. Their operations need not be watched."""
    watched = {id(module) for module in modules}
    quiet: dict[int, nn.Module] = {}
    pending = [child for module in modules for child in module._modules.values() if child is not None]
    while pending:
        child = pending.pop()
        if id(child) in watched or id(child) in quiet:
            continue
        if any(id(below) in watched for below in walk(child)[1:] if below is not None):
            pending.extend(below for below in child._modules.values() if below is not None)
        else:
            quiet[id(child)] = child
    return list(quiet.values())
