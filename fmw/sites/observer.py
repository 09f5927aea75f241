"""Observing the products of a forward pass: a ``TorchFunctionMode`` sees every multiplication the
model makes, keeps the ones that are weighting (``fmw.sites.products``), and for each notes the
modules running at that moment (read from the Python call stack, so nothing is hooked on the
model), whether the gate depends on the input, and which earlier product it continues.

PyTorch keeps the mode stack per thread, so an observation in one thread never sees another
thread's forward passes. An ``Observation`` is one context on one model: it may record products
(the probe), replace gates (``override_gates``) and route a site's two sides through identity
modules that attribution methods can hook (``points``). Several may be active in one thread (a
probe inside ``override_gates``); one mode serves them all.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field, replace
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from fmw.errors import FMWError
from fmw.layers import NoWeighting
from fmw.sites.lineage import Decision, Lineage, MappedFrame, to_root
from fmw.sites.products import (
    PRODUCT_FUNCTIONS,
    Layout,
    WeightingProduct,
    as_contract_gate,
    stacked_as_map,
    weighting_product,
)

__all__ = [
    "Keeper",
    "ModelIndex",
    "Observation",
    "ObservedProduct",
    "flush_products",
    "model_index",
    "observing",
    "refuse_unobservable",
    "suspended",
]

# The frame every module call passes through, holding the module and its inputs: ``nn.Module.__call__``
# (``_wrapped_call_impl``, whose three locals are cheaper to read than ``_call_impl``'s), where it exists.
_CALL_IMPL = getattr(nn.Module, "_wrapped_call_impl", nn.Module._call_impl).__code__
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

StageKey = tuple[str, int]  # (maker, ordinal)
Fill = Callable[[StageKey, Layout], "float | torch.Tensor | None"]


def refuse_unobservable(model: nn.Module) -> None:
    """Raise for models whose forward does not run through Python (TorchScript, torch.compile)."""
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


class Keeper:
    """Keeps the tensors a probe records. A map about to be overwritten by its own in-place product
    and every gate (small; often an expanded view) are copied at once; the rest are held by
    reference, with their version counters. When every operation is watched, an in-place
    operation on a held tensor copies it first (``preserve``); otherwise ``changed`` tells after
    the pass whether the model overwrote one (the probe then runs again, copying all). Without
    ``maps`` only the gates are kept: a map is recorded as a meta tensor, its shape and dtype."""

    def __init__(self, keep_on_device: bool, copy_all: bool = False, maps: bool = True) -> None:
        self.keep_on_device = keep_on_device
        self.copy_all = copy_all
        self.maps = maps
        self.held: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = {}
        self.preserved: dict[int, torch.Tensor] = {}
        self.stale = False  # a product's tensor was overwritten before its bookkeeping (``flush_products``)

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        return tensor.clone() if self.keep_on_device or tensor.is_cpu else tensor.to("cpu")

    def keep_map(self, tensor: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
        """A feature map to record: copied at once with ``copy`` (it is about to be overwritten),
        else held (``hold``); without ``maps``, its shape and dtype on the meta device."""
        if not self.maps:
            return torch.empty_like(tensor, device="meta")
        return self.copy(tensor) if copy else self.hold(tensor)

    def hold(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.copy_all or tensor.is_inference():  # an inference tensor has no version counter to check
            return self.copy(tensor)
        base = tensor._base if tensor._base is not None else tensor
        entry = self.held.get(id(base))
        if entry is not None and entry[0] is base and entry[1] is tensor:
            return entry[2]
        detached = tensor.detach()
        self.held[id(base)] = (base, tensor, detached, detached._version)  # the originals pin the ids
        return detached

    def preserve(self, target: object) -> bool:
        """Copy the held tensor ``target`` writes into, before it does; True if there was one."""
        if not isinstance(target, torch.Tensor) or not self.held:
            return False
        base = target._base if target._base is not None else target
        entry = self.held.get(id(base))
        if entry is None or entry[0] is not base:
            return False
        del self.held[id(base)]
        self.preserved[id(entry[2])] = self.copy(entry[2])
        return True

    @property
    def changed(self) -> bool:
        return self.stale or any(detached._version != version for _, _, detached, version in self.held.values())

    def settled(self, tensor: torch.Tensor) -> torch.Tensor:
        """A recorded tensor as it was when recorded, where the caller asked for it (the CPU unless
        ``keep_on_device``)."""
        preserved = self.preserved.get(id(tensor))
        if preserved is not None:
            return preserved
        return tensor if self.keep_on_device or tensor.is_meta else tensor.to("cpu")


def _written(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """The tensor an operation writes into (``x.add_(y)``, ``x += y``, ``F.relu(x, inplace=True)``,
    ``torch.add(a, b, out=x)``), or None for one that writes a new tensor."""
    if kwargs:
        if "out" in kwargs:
            return kwargs["out"]
        if kwargs.get("inplace") is True:
            return args[0] if args else None
    try:
        in_place = _IN_PLACE_BY_FUNCTION.get(func)
    except TypeError:  # an unhashable callable: decide by its name every time
        return args[0] if args and _in_place_name(func) else None
    if in_place is None:
        in_place = _in_place_name(func)
        if len(_IN_PLACE_BY_FUNCTION) < 4096:
            _IN_PLACE_BY_FUNCTION[func] = in_place
    return args[0] if args and in_place else None


def _in_place_name(func: Callable[..., Any]) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_OPERATORS


_IN_PLACE_OPERATORS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__setitem__"})
_IN_PLACE_BY_FUNCTION: dict[Callable[..., Any], bool] = {}  # what _in_place_name said of each function seen


@dataclass
class ObservedProduct:
    """One weighting product of a pass, or (``layout`` None) a placeholder site's pass-through.
    ``note`` says where the gate is not shown as applied (a frame fmw could not map back)."""

    index: int
    layout: Layout | None
    static: bool
    maker: str
    ordinal: int
    root: int
    candidates: tuple[str, ...]
    before: torch.Tensor | None = None
    gate: torch.Tensor | None = None
    after: torch.Tensor | None = None
    note: str | None = None


@dataclass
class _Module:
    name: str
    candidate: bool  # may name a site (not a container, not the model itself)


@dataclass(eq=False)
class ModelIndex:
    """A model's modules by identity and by qualified name, and the sites its last pass showed;
    valid while its module tree is the same (compared module by module, by identity)."""

    tree: tuple[int, ...]  # ids of the walk below the model (``by_name`` keeps those modules alive)
    modules: dict[int, _Module]
    by_name: dict[str, nn.Module]  # the model itself left out: the index must not keep it alive
    root: weakref.ref[nn.Module]
    tensors: dict[int, weakref.ref[torch.Tensor]]  # parameters and buffers: what does not depend on the input
    placeholders: tuple[nn.Module, ...]  # fmw's ``none`` layers (``_placeholder_hooks``), each once
    sites: list[Any] | None = None
    copy_records: bool = False  # the model overwrites tensors a probe records: copy them at once
    grouping: Any = None  # the last pass's products and their sites (``fmw.sites.grouping``)
    decisions: dict[StageKey, Decision] | None = None  # what discovery decided of each product
    frame_inputs: Any = None  # the input shapes discovery mapped frames for (None: no frame mapped)
    quiet: tuple[tuple[int, ...], list[nn.Module]] | None = None  # ``quiet_children``'s last answer

    def module(self, name: str) -> nn.Module:
        model = self.root() if name == "" else self.by_name[name]
        assert model is not None, "the index outlived its model"
        return model

    def quiet_children(self, makers: Sequence[nn.Module]) -> list[nn.Module]:
        """``_quiet_children(makers)``, remembered for the makers of the last call."""
        key = tuple(map(id, makers))
        if self.quiet is None or self.quiet[0] != key:
            self.quiet = (key, _quiet_children(makers))
        return self.quiet[1]


_INDEXES: weakref.WeakKeyDictionary[nn.Module, ModelIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def _walk(model: nn.Module) -> list[nn.Module | None]:
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
    modules = _walk(model)
    tree = tuple(map(id, modules[1:]))
    with _INDEXES_LOCK:
        cached = _INDEXES.get(model)
    if cached is not None and cached.tree == tree:
        return cached
    named: dict[int, _Module] = {}
    by_name: dict[str, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) not in named:
            named[id(module)] = _Module(name, bool(name) and not isinstance(module, _CONTAINERS))
        if name:
            by_name[name] = module
    tensors = {id(tensor): weakref.ref(tensor) for tensor in itertools.chain(model.parameters(), model.buffers())}
    placeholders = tuple(
        {id(module): module for module in (model, *by_name.values()) if isinstance(module, NoWeighting)}.values()
    )
    index = ModelIndex(tree, named, by_name, weakref.ref(model), tensors, placeholders)
    with _INDEXES_LOCK:
        _INDEXES[model] = index
    return index


@dataclass(eq=False)
class Observation:
    """What one context does with the weighting products of its model's forward passes."""

    model: nn.Module
    record: Keeper | None = None
    fill: Fill | None = None
    points: Mapping[StageKey, tuple[nn.Module | None, nn.Module | None]] = field(default_factory=dict)
    finished: Callable[[list[ObservedProduct]], None] | None = None
    products: list[ObservedProduct] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _afters: dict[int, tuple[weakref.ref[torch.Tensor], int]] = field(default_factory=dict)
    _roots: dict[int, tuple[weakref.ref[torch.Tensor], int]] = field(default_factory=dict)
    _root_tensors: dict[int, weakref.ref[torch.Tensor]] = field(default_factory=dict)

    discover: bool = False  # every operation watched: decide what each product is (``finish``)
    known_index: InitVar[ModelIndex | None] = None  # the model's index, when the caller has it at hand

    def __post_init__(self, known_index: ModelIndex | None) -> None:
        self.index = known_index if known_index is not None else model_index(self.model)
        self.modules = self.index.modules
        self.lineage: Lineage | None = None
        self.decisions: dict[StageKey, Decision] = {}

    def start_pass(self) -> None:
        self.products.clear()
        self._counts.clear()
        self._afters.clear()
        self._roots.clear()
        self._root_tensors.clear()
        self.decisions = {}
        if self.discover:
            self.lineage = Lineage(_STATE.static)

    def _made(self, active: list[tuple[int, Any]]) -> tuple[list[tuple[_Module, Any]], str, int] | None:
        mine = [(self.modules[key], first) for key, first in active if key in self.modules]
        if not mine:
            return None
        maker = mine[-1][0].name
        ordinal = self._counts.get(maker, 0)
        self._counts[maker] = ordinal + 1
        return mine, maker, ordinal

    def note(
        self, feature_map: torch.Tensor, layout: Layout | None, static: bool, active: list[tuple[int, Any]]
    ) -> ObservedProduct | None:
        """Register a product on ``feature_map`` made while ``active`` modules (outer to inner, as
        (id, first input)) ran; None when no module of this model was running."""
        made = self._made(active)
        return None if made is None else self._register(feature_map, layout, static, *made)

    def note_product(
        self, product: WeightingProduct, args: tuple[Any, ...], active: list[tuple[int, Any]]
    ) -> tuple[ObservedProduct, WeightingProduct, MappedFrame | None, torch.Tensor | None] | None:
        """Register a product candidate; None when no module of this model ran it or it is not
        weighting (decided now by its lineage while discovering, else as discovery decided). Returns
        the product's record, the product with its map chosen, its frame and the frame's root map."""
        made = self._made(active)
        if made is None:
            return None
        mine, maker, ordinal = made
        root: torch.Tensor | None = None
        if self.lineage is not None:
            decision, root = self._decide(product, args, mine, self.lineage)
            self.decisions[(maker, ordinal)] = decision
        else:
            known = self.index.decisions.get((maker, ordinal)) if self.index.decisions is not None else None
            decision = known if known is not None else Decision(product.layout != "full", product.map_index)
        if not decision.weighting:
            return None
        if decision.map_index != product.map_index:
            product = WeightingProduct(product.gate_index, product.map_index, product.layout, product.in_place)
        frame = decision.frame
        if frame is not None and root is None and frame.owner is not None:
            owner = id(self.index.module(frame.owner))
            root = next((first for key, first in active if key == owner), None)
            if not isinstance(root, torch.Tensor) or tuple(root.shape) != frame.root_shape:
                root = None
        gate_static = decision.static
        if gate_static is None:
            # whether the gate depends on the input is known where every operation is watched (a
            # discovering pass, which remembers it for the passes that watch less); elsewhere only a
            # parameter or buffer, or a gate computed from them within the watched modules, is static
            gate_static = _is_static(args[product.gate_index], _STATE.static)
            if self.lineage is not None:
                self.decisions[(maker, ordinal)] = replace(decision, static=gate_static)
        feature_map = args[product.map_index]
        layout = frame.layout if frame is not None else product.layout
        observed = self._register(root if root is not None else feature_map, layout, gate_static, mine, maker, ordinal)
        observed.note = decision.note if frame is None else frame.note
        return observed, product, frame, root

    def _decide(
        self, product: WeightingProduct, args: tuple[Any, ...], mine: list[tuple[_Module, Any]], lineage: Lineage
    ) -> tuple[Decision, torch.Tensor | None]:
        map_index, gate_index = product.map_index, product.gate_index
        if product.layout == "full" and not product.in_place and product.gate_axes is None:
            if not lineage.map_first(args[map_index], args[gate_index]):
                map_index, gate_index = gate_index, map_index
            if lineage.self_gating(args[map_index], args[gate_index]):
                return Decision(False, map_index, note="a pointwise function of the map itself"), None
        feature_map = args[map_index]
        if product.stacked:
            return Decision(True, map_index, note=_stacked_note(feature_map)), None
        gate = product.broadcast_gate(args[gate_index])
        frame, root = lineage.frame(feature_map, gate, ((module.name, first) for module, first in mine))
        return Decision(True, map_index, frame, None if frame else lineage.unmapped_note(feature_map)), root

    def finish(self, outputs: Sequence[torch.Tensor]) -> None:
        """After a discovering pass: drop the products that are not weighting (an affine
        normalisation, a product that only feeds a gate) and remember every decision."""
        if self.lineage is None:
            return
        excluded = self.lineage.excluded(outputs)
        kept = []
        for product in self.products:
            key = (product.maker, product.ordinal)
            if product.index in excluded and product.layout is not None:
                self.decisions[key] = Decision(False, 0, note=excluded[product.index])
            else:
                kept.append(product)
        self.products[:] = kept
        self.index.decisions = dict(self.decisions)
        self.lineage = None

    def _register(
        self,
        feature_map: torch.Tensor,
        layout: Layout | None,
        static: bool,
        mine: list[tuple[_Module, Any]],
        maker: str,
        ordinal: int,
    ) -> ObservedProduct:
        index = len(self.products)
        root = index
        previous = self._afters.get(id(feature_map))
        sibling = self._roots.get(id(feature_map))
        if previous is not None and previous[0]() is feature_map:
            root = self.products[previous[1]].root
        elif sibling is not None and sibling[0]() is feature_map:
            root = sibling[1]
        else:
            self._roots[id(feature_map)] = (weakref.ref(feature_map), index)
            self._root_tensors[index] = weakref.ref(feature_map)
        root_tensor = self._root_tensors[root]()
        candidates = tuple(
            module.name
            for module, first in mine
            if module.candidate and root_tensor is not None and first is root_tensor
        )
        product = ObservedProduct(index, layout, static, maker, ordinal, root, candidates)
        self.products.append(product)
        return product

    def noted_after(self, product: ObservedProduct, after: torch.Tensor) -> None:
        self._afters[id(after)] = (weakref.ref(after), product.index)


class _State(threading.local):
    """The calling thread's observations, the tensors known not to depend on the input, and the
    one mode that serves them (entered while ``depth`` > 0)."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.static: dict[int, weakref.ref[torch.Tensor]] = {}
        self.mode: _WeightingMode | None = None
        self.depth = 0
        self.everything = 0  # observations that watch every operation (a discovering pass among them)
        self.hushes: list[bool] = []  # per quiet module running: whether it took the mode off the stack
        self.roles: dict[int, list[int]] = {}  # id(module) -> how many observations watch it, and quiet it
        self.deferrable = False  # every observation only records products discovery judged (``_handle``)
        self.pending: list[tuple[Any, ...]] = []  # products whose bookkeeping waits (``flush_products``)

    def update_deferrable(self) -> None:
        self.deferrable = not self.everything and all(
            observation.fill is None
            and not observation.points
            and (observation.record is None or not observation.record.copy_all)
            for observation in self.observations
        )

    def activate(self) -> None:
        if self.depth == 0:
            self.mode = _WeightingMode()
            self.mode.__enter__()
        self.depth += 1

    def deactivate(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.mode = None

    def hush(self) -> None:
        """Take the mode off the stack while a module that makes no product runs (``_Within``);
        only when it is on top (nothing entered above it) and no observation watches everything."""
        mode = self.mode
        hushed = (
            mode is not None
            and not self.everything
            and not self.hushed
            and torch._C._len_torch_function_stack() > 0
            and torch._C._get_function_stack_at(torch._C._len_torch_function_stack() - 1) is mode
        )
        if hushed:
            assert mode is not None
            mode.__exit__(None, None, None)
        self.hushes.append(hushed)

    def unhush(self) -> None:
        if self.hushes and self.hushes.pop() and self.mode is not None:
            self.mode.__enter__()

    @property
    def hushed(self) -> bool:
        return any(self.hushes)


_STATE = _State()


def _active_modules() -> list[tuple[int, Any]]:
    """(id(module), first input) of every module whose forward is running, outer to inner."""
    found: list[tuple[int, Any]] = []
    frame: FrameType | None = sys._getframe(2)
    roots = {id(observation.model) for observation in _STATE.observations}
    while frame is not None:
        if frame.f_code is _CALL_IMPL:
            local = frame.f_locals
            args = local.get("args") or ()
            kwargs = local.get("kwargs") or {}
            first = args[0] if args else next(iter(kwargs.values()), None)
            module = id(local.get("self"))
            found.append((module, first))
            roots.discard(module)
            if not roots:  # above every observed model's own call: no module of theirs is running
                break
        frame = frame.f_back
    found.reverse()
    return found


def _is_static(value: object, static: dict[int, weakref.ref[torch.Tensor]]) -> bool:
    reference = static.get(id(value))
    return reference is not None and reference() is value


def _arguments_static(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], static: dict[int, weakref.ref[torch.Tensor]]
) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            if not _is_static(value, static):
                return False
        elif isinstance(value, (list, tuple)) and any(
            isinstance(item, torch.Tensor) and not _is_static(item, static) for item in value
        ):
            return False
    return True


def _mark_static(output: object, static: dict[int, weakref.ref[torch.Tensor]]) -> None:
    if isinstance(output, torch.Tensor):
        static[id(output)] = weakref.ref(output)
    elif isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                static[id(item)] = weakref.ref(item)


def _stacked_note(feature_map: torch.Tensor) -> str:
    n, k, c, h, w = feature_map.shape
    return (
        f"{k} branch maps stacked as ({n}, {k}, {c}, {h}, {w}) with one channel gate each; shown as one "
        f"({n}, {k * c}, {h}, {w}) map, branch b on channels b*{c} to b*{c}+{c - 1}"
    )


def _lineage() -> Lineage | None:
    for observation in _STATE.observations:
        if observation.lineage is not None:
            return observation.lineage
    return None


def _operand_fill(
    value: float | torch.Tensor,
    product: WeightingProduct,
    operand: torch.Tensor,
    feature_map: torch.Tensor,
    frame: MappedFrame | None,
) -> torch.Tensor:
    """A replacement for the call's gate operand: a number, or a tensor in the contract shape of
    the stage's layout (in the frame of the map the site shows)."""
    fill = torch.as_tensor(value, dtype=operand.dtype, device=operand.device)
    if fill.dim() == 0:
        return fill.expand(operand.shape) if operand.dim() else fill
    if frame is not None:
        index = frame.index.to(fill.device)
        return fill.expand(frame.root_shape).reshape(-1)[index.reshape(-1)].view(index.shape)
    if product.stacked:
        n, k, c, _, _ = feature_map.shape
        return fill.expand(n, k * c, 1, 1).reshape(n, k, c, 1, 1)
    contract = as_contract_gate(product.broadcast_gate(operand), feature_map, product.layout)
    return product.operand_gate(fill.expand(contract.shape), operand)


class _WeightingMode(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        product = weighting_product(func, args, kwargs) if func in PRODUCT_FUNCTIONS else None
        handled, output = _handle(func, args, kwargs, product) if product is not None else (False, None)
        if handled:
            return output
        target = _written(func, args, kwargs)
        if target is not None:
            for observation in _STATE.observations:
                if observation.record is not None and observation.record.preserve(target):
                    observation.index.copy_records = True
        if not _STATE.everything:
            # only the modules that made the products are watched: discovery already decided what
            # each product is and whether its gate is static, so there is nothing else to follow
            return func(*args, **kwargs)
        output = func(*args, **kwargs)
        static = _STATE.static
        first = args[0] if args else None
        # most operations take an activation first: decided without looking further
        if not (isinstance(first, torch.Tensor) and id(first) not in static) and _arguments_static(
            args, kwargs, static
        ):
            _mark_static(output, static)
        lineage = _lineage()
        if lineage is not None:
            lineage.observe(func, args, kwargs, output)
        return output


def _handle(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], product: WeightingProduct
) -> tuple[bool, Any]:
    """Run a weighting product candidate, recording and replacing its gate for the observations
    that count it as weighting; (False, output) when none does (it is then an ordinary operation).

    Where every observation only records what discovery already judged (a steady-state probe), the
    product runs at once and its bookkeeping waits until the pass ends (``flush_products``): done
    in one go it costs about half what it does between the model's own operations, whose kernels
    have pushed the interpreter out of the caches. The versions of its tensors are noted, so that
    a tensor the model overwrites meanwhile is found out (the probe then runs again, keeping
    everything at once)."""
    if not _STATE.observations:
        return False, None
    feature_map = args[product.map_index]
    if _STATE.deferrable and not product.in_place and not feature_map.is_inference():
        active = _active_modules()
        result = func(*args, **kwargs)
        if isinstance(result, torch.Tensor):
            gate = args[product.gate_index]
            versions = (feature_map._version, gate._version, result._version)
            _STATE.pending.append((func, args, kwargs, product, active, result, versions))
            return True, result
        return _apply(func, args, kwargs, product, active, result)
    flush_products()
    return _apply(func, args, kwargs, product, _active_modules())


def flush_products() -> None:
    """Do the bookkeeping of the calling thread's products that waited (``_handle``)."""
    pending = _STATE.pending
    if not pending:
        return
    _STATE.pending = []
    with torch.no_grad():
        for func, args, kwargs, product, active, result, versions in pending:
            feature_map, gate = args[product.map_index], args[product.gate_index]
            if (feature_map._version, gate._version, result._version) != versions:
                for observation in _STATE.observations:  # overwritten since: its record would be wrong
                    if observation.record is not None:
                        observation.record.stale = True
                        observation.index.copy_records = True
            _apply(func, args, kwargs, product, active, result)


def _apply(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    product: WeightingProduct,
    active: list[tuple[int, Any]],
    made: Any = None,
) -> tuple[bool, Any]:
    """``_handle``'s work for a product made while ``active`` modules ran: ``made`` is its result
    when it was already computed (no observation replaces gates then), else it is computed here."""
    noted = []
    frame: MappedFrame | None = None
    root: torch.Tensor | None = None
    for observation in _STATE.observations:
        found = observation.note_product(product, args, active)
        if found is not None:
            noted.append((observation, found[0]))
            _, product, frame, root = found
    if not noted:
        return False, None
    feature_map: torch.Tensor = args[product.map_index]
    operand: torch.Tensor = args[product.gate_index]
    for observation, observed in noted:
        if observation.fill is not None:
            value = observation.fill((observed.maker, observed.ordinal), observed.layout or product.layout)
            if value is not None:
                operand = _operand_fill(value, product, operand, feature_map, frame)
    recorders = [(observation, observed) for observation, observed in noted if observation.record is not None]
    shown = root if root is not None else feature_map
    if product.stacked:
        shown = stacked_as_map(feature_map)
    before_copies = [
        observation.record.keep_map(shown, copy=product.in_place and shown is feature_map)
        for observation, _ in recorders
        if observation.record is not None
    ]
    before_point, after_point = None, None
    for observation, observed in noted:
        points = observation.points.get((observed.maker, observed.ordinal))
        if points is not None:
            before_point, after_point = points
    if product.in_place:  # the map may be what an earlier record holds (a chained site's product)
        for observation, _ in recorders:
            if observation.record is not None and observation.record.preserve(feature_map):
                observation.index.copy_records = True
    operands = list(args)
    operands[product.gate_index] = operand
    if before_point is not None or after_point is not None:
        operands[product.map_index] = before_point(feature_map) if before_point is not None else feature_map
        result = torch.mul(*operands[:2]) if product.in_place else func(*operands, **kwargs)
        if after_point is not None:
            result = after_point(result)
        if product.in_place:
            result = feature_map.copy_(result)
    elif made is not None:
        result = made
    else:
        result = func(*operands, **kwargs)
    if recorders:
        gate = product.broadcast_gate(operand)
        if product.stacked:
            n, k, c, _, _ = feature_map.shape
            contract = stacked_as_map(gate.expand(n, k, c, 1, 1))
            after_shown = stacked_as_map(result)
        elif frame is not None:
            placed = to_root(gate, frame, None)
            contract = as_contract_gate(placed, placed, frame.layout)
            after_shown = to_root(result, frame, root)
        else:
            contract = as_contract_gate(gate, feature_map, product.layout)
            after_shown = result
    for (observation, observed), before in zip(recorders, before_copies, strict=True):
        assert observation.record is not None
        observed.before = before
        observed.gate = observation.record.copy(contract)
        observed.after = observation.record.keep_map(after_shown)
    lineage = _lineage()
    for observation, observed in noted:
        observation.noted_after(observed, result)
        if lineage is not None and observation.lineage is lineage:
            lineage.product(observed.index, feature_map, args[product.gate_index], observed.static, result)
    return True, result


def _placeholder_hooks(observation: Observation) -> list[RemovableHandle]:
    """fmw's ``none`` layer makes no product; record it as a site without a gate so that every
    network of the family has the same sites (its input passes through unchanged)."""
    owner = threading.get_ident()
    handles = []
    for module in observation.index.placeholders:

        def placeholder(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            if threading.get_ident() != owner or not any(o is observation for o in _STATE.observations):
                return
            flush_products()  # the products made before it first, in order
            observed = observation.note(inputs[0], None, False, _active_modules())
            if observed is not None and observation.record is not None:
                observed.before = observation.record.keep_map(inputs[0])
                observed.after = observation.record.keep_map(output)

        handles.append(module.register_forward_hook(placeholder))
    return handles


def _quiet_children(modules: Sequence[nn.Module]) -> list[nn.Module]:
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
        if any(id(below) in watched for below in _walk(child)[1:] if below is not None):
            pending.extend(below for below in child._modules.values() if below is not None)
        else:
            quiet[id(child)] = child
    return list(quiet.values())


WATCH, QUIET = 0, 1  # the two roles a module's forward plays for the observations of a thread


class _Forwards:
    """Forward wrappers put on modules while some observation needs them (cheaper than a pair of
    hooks, whose presence sends every call of the module down ``nn.Module``'s slow path): one per
    module for all threads, removed when its last user is done. For the calling thread, a watched
    module's forward runs with the mode entered (the products are made in it), a quiet one's with
    the mode taken off the stack (``_State.hush``); for other threads, as it is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed: dict[int, tuple[nn.Module, object, Callable[..., Any], int]] = {}

    def add(self, module: nn.Module) -> None:
        key = id(module)
        with self.lock:
            entry = self.installed.get(key)
            if entry is not None and entry[0] is module:
                self.installed[key] = (*entry[:3], entry[3] + 1)
                return
            previous = module.__dict__.get("forward", _ABSENT)
            wrapper = _forward_wrapper(module.forward, key)
            module.__dict__["forward"] = wrapper
            self.installed[key] = (module, previous, wrapper, 1)

    def remove(self, module: nn.Module) -> None:
        key = id(module)
        with self.lock:
            entry = self.installed.get(key)
            if entry is None or entry[0] is not module:
                return
            if entry[3] > 1:
                self.installed[key] = (*entry[:3], entry[3] - 1)
                return
            del self.installed[key]
            _, previous, wrapper, _ = entry
            if module.__dict__.get("forward") is wrapper:  # not replaced meanwhile by someone else
                if previous is _ABSENT:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = previous


_ABSENT = object()
_FORWARDS = _Forwards()


def _forward_wrapper(forward: Callable[..., Any], key: int) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        roles = _STATE.roles.get(key)
        if roles is None:
            return forward(*args, **kwargs)
        if roles[WATCH]:
            mode = _STATE.mode if _STATE.hushed else None
            if mode is not None:  # called from within a quiet module: put the mode back meanwhile
                mode.__enter__()
                try:
                    return forward(*args, **kwargs)
                finally:
                    mode.__exit__(None, None, None)
            _STATE.activate()
            try:
                return forward(*args, **kwargs)
            finally:
                _STATE.deactivate()
        if not _STATE.depth:
            return forward(*args, **kwargs)
        _STATE.hush()
        try:
            return forward(*args, **kwargs)
        finally:
            _STATE.unhush()

    return wrapped


class _Within:
    """For one observation in one thread: ``modules`` watched and their quiet children unwatched
    (``_Forwards``); ``remove`` undoes it."""

    def __init__(self, modules: Sequence[nn.Module], index: ModelIndex | None = None) -> None:
        self.parts = [(module, WATCH) for module in dict.fromkeys(modules)]
        watched = [module for module, _ in self.parts]
        quiet = index.quiet_children(watched) if index is not None else _quiet_children(watched)
        self.parts += [(module, QUIET) for module in quiet]
        for module, role in self.parts:
            _FORWARDS.add(module)
            roles = _STATE.roles.setdefault(id(module), [0, 0])
            roles[role] += 1

    def remove(self) -> None:
        for module, role in self.parts:
            roles = _STATE.roles.get(id(module))
            if roles is not None:
                roles[role] -= 1
                if not any(roles):
                    del _STATE.roles[id(module)]
            _FORWARDS.remove(module)
        self.parts = []


@contextmanager
def suspended() -> Iterator[None]:
    """Within the block, the calling thread's observations see nothing: for a discovering pass run
    in the middle of another observation (``override_gates`` on a model not yet discovered)."""
    flush_products()
    saved, static = list(_STATE.observations), dict(_STATE.static)
    _STATE.observations.clear()
    try:
        yield
    finally:
        _STATE.observations[:] = saved
        _STATE.static.update(static)
        _STATE.update_deferrable()


@contextmanager
def observing(
    observation: Observation, *, per_pass: bool = False, within: Sequence[nn.Module] | None = None
) -> Iterator[Observation]:
    """Install ``observation`` for the calling thread's forward passes within the block; with
    ``per_pass``, its per-pass state restarts whenever the model's forward starts, and its
    ``finished`` callback gets the pass's products when the forward returns.

    Every operation of the model is watched, unless ``within`` names the modules where the
    products are known to be made (the sites an earlier pass found): then only the operations
    inside those modules' forwards are, and the rest of the model runs at full speed."""
    refuse_unobservable(observation.model)
    owner = threading.get_ident()
    handles = _placeholder_hooks(observation)
    if per_pass:

        def restart(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if threading.get_ident() == owner:
                flush_products()
                observation.start_pass()

        handles.append(observation.model.register_forward_pre_hook(restart))
        finished = observation.finished
        if finished is not None:

            def finish(module: nn.Module, inputs: tuple[Any, ...], output: object) -> None:
                if threading.get_ident() == owner:
                    flush_products()
                    finished(observation.products)

            handles.append(observation.model.register_forward_hook(finish))
    watching = _Within(within, observation.index) if within is not None else None
    _STATE.static.update(observation.index.tensors)
    _STATE.observations.append(observation)
    if within is None:
        _STATE.activate()
        _STATE.everything += 1
    _STATE.update_deferrable()
    completed = False
    try:
        yield observation
        completed = True
    finally:
        if completed:
            flush_products()
        else:  # the forward raised: what it made is not wanted
            _STATE.pending.clear()
        for handle in handles:
            handle.remove()
        if watching is not None:
            watching.remove()
        else:
            _STATE.deactivate()
            _STATE.everything -= 1
        _STATE.observations[:] = [o for o in _STATE.observations if o is not observation]
        _STATE.update_deferrable()
        if not _STATE.observations:
            _STATE.static.clear()
