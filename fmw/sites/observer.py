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
from dataclasses import InitVar, dataclass, field
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from fmw.errors import FMWError
from fmw.layers import NoWeighting
from fmw.sites.products import MULTIPLICATIONS, Layout, WeightingProduct, as_contract_gate, weighting_product

__all__ = ["Keeper", "ModelIndex", "Observation", "ObservedProduct", "model_index", "observing", "refuse_unobservable"]

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

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        return tensor.clone() if self.keep_on_device else tensor.to("cpu", copy=True)

    def keep_map(self, tensor: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
        """A feature map to record: copied at once with ``copy`` (it is about to be overwritten),
        else held (``hold``); without ``maps``, its shape and dtype on the meta device."""
        if not self.maps:
            return torch.empty_like(tensor, device="meta")
        return self.copy(tensor) if copy else self.hold(tensor)

    def hold(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.copy_all:
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
        return any(detached._version != version for _, _, detached, version in self.held.values())

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
    """One weighting product of a pass, or (``layout`` None) a placeholder site's pass-through."""

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

    def module(self, name: str) -> nn.Module:
        model = self.root() if name == "" else self.by_name[name]
        assert model is not None, "the index outlived its model"
        return model


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

    known_index: InitVar[ModelIndex | None] = None  # the model's index, when the caller has it at hand

    def __post_init__(self, known_index: ModelIndex | None) -> None:
        self.index = known_index if known_index is not None else model_index(self.model)
        self.modules = self.index.modules

    def start_pass(self) -> None:
        self.products.clear()
        self._counts.clear()
        self._afters.clear()
        self._roots.clear()
        self._root_tensors.clear()

    def note(
        self, feature_map: torch.Tensor, layout: Layout | None, static: bool, active: list[tuple[int, Any]]
    ) -> ObservedProduct | None:
        """Register a product on ``feature_map`` made while ``active`` modules (outer to inner, as
        (id, first input)) ran; None when no module of this model was running."""
        mine = [(self.modules[key], first) for key, first in active if key in self.modules]
        if not mine:
            return None
        maker = mine[-1][0].name
        ordinal = self._counts.get(maker, 0)
        self._counts[maker] = ordinal + 1
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


_STATE = _State()


def _active_modules() -> list[tuple[int, Any]]:
    """(id(module), first input) of every module whose forward is running, outer to inner."""
    found: list[tuple[int, Any]] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code is _CALL_IMPL:
            local = frame.f_locals
            args = local.get("args") or ()
            kwargs = local.get("kwargs") or {}
            first = args[0] if args else next(iter(kwargs.values()), None)
            found.append((id(local.get("self")), first))
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


def _shaped_fill(
    value: float | torch.Tensor, gate: torch.Tensor, feature_map: torch.Tensor, layout: Layout
) -> torch.Tensor:
    """A replacement gate broadcastable like ``gate``: a number, or a tensor in the contract layout."""
    fill = torch.as_tensor(value, dtype=gate.dtype, device=gate.device)
    if fill.dim() == 0:
        return fill.expand(gate.shape) if gate.dim() else fill
    contract = as_contract_gate(gate, feature_map, layout)
    return fill.to(gate.dtype).expand(contract.shape).reshape(contract.shape)


class _WeightingMode(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        product = weighting_product(func, args) if func in MULTIPLICATIONS and not kwargs else None
        if product is None or not _STATE.observations:
            target = _written(func, args, kwargs)
            if target is not None:
                for observation in _STATE.observations:
                    if observation.record is not None and observation.record.preserve(target):
                        observation.index.copy_records = True
            output = func(*args, **kwargs)
            static = _STATE.static
            first = args[0] if args else None
            # most operations take an activation first: decided without looking further
            if not (isinstance(first, torch.Tensor) and id(first) not in static) and _arguments_static(
                args, kwargs, static
            ):
                _mark_static(output, static)
            return output
        return _handle(func, args, product)


def _handle(func: Callable[..., Any], args: tuple[Any, ...], product: WeightingProduct) -> Any:
    feature_map: torch.Tensor = args[product.map_index]
    gate: torch.Tensor = args[product.gate_index]
    layout = product.layout
    static = _is_static(gate, _STATE.static)
    active = _active_modules()
    noted = [
        (observation, observed)
        for observation in _STATE.observations
        if (observed := observation.note(feature_map, layout, static, active)) is not None
    ]
    if not noted:
        return func(*args)
    for observation, observed in noted:
        if observation.fill is not None:
            value = observation.fill((observed.maker, observed.ordinal), layout)
            if value is not None:
                gate = _shaped_fill(value, gate, feature_map, layout)
    recorders = [(observation, observed) for observation, observed in noted if observation.record is not None]
    before_copies = [
        observation.record.keep_map(feature_map, copy=product.in_place)
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
    operands[product.gate_index] = gate
    if before_point is not None or after_point is not None:
        mapped = before_point(feature_map) if before_point is not None else feature_map
        result = mapped * gate
        if after_point is not None:
            result = after_point(result)
        if product.in_place:
            result = feature_map.copy_(result)
    else:
        result = func(*operands)
    for (observation, observed), before in zip(recorders, before_copies, strict=True):
        assert observation.record is not None
        observed.before = before
        observed.gate = observation.record.copy(as_contract_gate(gate, feature_map, layout))
        observed.after = observation.record.keep_map(result)
    for observation, observed in noted:
        observation.noted_after(observed, result)
    return result


def _placeholder_hooks(observation: Observation) -> list[RemovableHandle]:
    """fmw's ``none`` layer makes no product; record it as a site without a gate so that every
    network of the family has the same sites (its input passes through unchanged)."""
    owner = threading.get_ident()
    handles = []
    for module in observation.index.placeholders:

        def placeholder(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            if threading.get_ident() != owner or not any(o is observation for o in _STATE.observations):
                return
            observed = observation.note(inputs[0], None, False, _active_modules())
            if observed is not None and observation.record is not None:
                observed.before = observation.record.keep_map(inputs[0])
                observed.after = observation.record.keep_map(output)

        handles.append(module.register_forward_hook(placeholder))
    return handles


def _watch_within(modules: Sequence[nn.Module], owner: int) -> tuple[list[RemovableHandle], list[int]]:
    """Hooks that enter the mode while one of ``modules`` runs (in the owner thread only), and a
    counter of the activations still open, for cleaning up after a forward that raised."""
    open_count = [0]

    def enter(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if threading.get_ident() == owner:
            _STATE.activate()
            open_count[0] += 1

    def leave(module: nn.Module, inputs: tuple[Any, ...], output: object) -> None:
        if threading.get_ident() == owner and open_count[0] > 0:
            open_count[0] -= 1
            _STATE.deactivate()

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles, open_count


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
                observation.start_pass()

        handles.append(observation.model.register_forward_pre_hook(restart))
        finished = observation.finished
        if finished is not None:

            def finish(module: nn.Module, inputs: tuple[Any, ...], output: object) -> None:
                if threading.get_ident() == owner:
                    finished(observation.products)

            handles.append(observation.model.register_forward_hook(finish))
    open_count = [0]
    if within is not None:
        watch_handles, open_count = _watch_within(within, owner)
        handles += watch_handles
    _STATE.static.update(observation.index.tensors)
    _STATE.observations.append(observation)
    if within is None:
        _STATE.activate()
        open_count[0] += 1
    try:
        yield observation
    finally:
        for handle in handles:
            handle.remove()
        for _ in range(open_count[0]):  # a forward that raised inside a watched module left it open
            _STATE.deactivate()
        _STATE.observations[:] = [o for o in _STATE.observations if o is not observation]
        if not _STATE.observations:
            _STATE.static.clear()
