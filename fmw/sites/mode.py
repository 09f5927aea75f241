"""The mode that sees a forward pass's multiplications, and where it is active. A
``TorchFunctionMode`` sees every operation while a discovering observation runs; afterwards only
inside the modules that made products (their forwards wrapped for the probe's duration, their
children that made none run with the mode off the stack), and sites declared on modules
(``fmw.sites.declared``) are recorded by a forward hook on those modules. A product is run here
for every observation of the thread at once (``Observation`` decides what it is; its gate may be
replaced and its sides routed through observation points), or, where every observation only
records what discovery judged, run at once with its bookkeeping after the pass."""

from __future__ import annotations

import copy
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from fmw.errors import FMWError
from fmw.sites.declared import Declaration
from fmw.sites.index import ModelIndex, quiet_children, refuse_unobservable
from fmw.sites.lineage import MappedFrame, to_root
from fmw.sites.observer import STATE, Observation, arguments_static, current_lineage, mark_static
from fmw.sites.products import (
    PRODUCT_FUNCTIONS,
    WeightingProduct,
    as_contract_gate,
    gate_layout,
    stacked_as_map,
    weighting_product,
)
from fmw.sites.recording import written

__all__ = ["flush_products", "observing", "suspended"]

# The frame every module call passes through, holding the module and its inputs: ``nn.Module.__call__``
# (``_wrapped_call_impl``, whose three locals are cheaper to read than ``_call_impl``'s), where it exists.
_CALL_IMPL = getattr(nn.Module, "_wrapped_call_impl", nn.Module._call_impl).__code__


def _active_modules() -> list[tuple[int, Any]]:
    """(id(module), first input) of every module whose forward is running, outer to inner."""
    found: list[tuple[int, Any]] = []
    frame: FrameType | None = sys._getframe(2)
    roots = {id(observation.model) for observation in STATE.observations}
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
        target = written(func, args, kwargs)
        if target is not None:
            for observation in STATE.observations:
                if observation.record is not None and observation.record.preserve(target):
                    observation.index.copy_records = True
        if not STATE.everything:
            # only the modules that made the products are watched: discovery already decided what
            # each product is and whether its gate is static, so there is nothing else to follow
            return func(*args, **kwargs)
        output = func(*args, **kwargs)
        static = STATE.static
        first = args[0] if args else None
        # most operations take an activation first: decided without looking further
        if not (isinstance(first, torch.Tensor) and id(first) not in static) and arguments_static(args, kwargs, static):
            mark_static(output, static)
        lineage = current_lineage()
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
    if not STATE.observations:
        return False, None
    feature_map = args[product.map_index]
    if STATE.deferrable and not product.in_place and not feature_map.is_inference():
        active = _active_modules()
        result = func(*args, **kwargs)
        if isinstance(result, torch.Tensor):
            gate = args[product.gate_index]
            versions = (feature_map._version, gate._version, result._version)
            STATE.pending.append((func, args, kwargs, product, active, result, versions))
            return True, result
        return _apply(func, args, kwargs, product, active, result)
    flush_products()
    return _apply(func, args, kwargs, product, _active_modules())


def flush_products() -> None:
    """Do the bookkeeping of the calling thread's products that waited (``_handle``)."""
    pending = STATE.pending
    if not pending:
        return
    STATE.pending = []
    with torch.no_grad():
        for func, args, kwargs, product, active, result, versions in pending:
            feature_map, gate = args[product.map_index], args[product.gate_index]
            if (feature_map._version, gate._version, result._version) != versions:
                for observation in STATE.observations:  # overwritten since: its record would be wrong
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
    for observation in STATE.observations:
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
    lineage = current_lineage()
    for observation, observed in noted:
        observation.noted_after(observed, result)
        if lineage is not None and observation.lineage is lineage:
            lineage.product(observed.index, feature_map, args[product.gate_index], observed.static, result)
    return True, result


def _declared_hooks(observation: Observation) -> list[RemovableHandle]:
    """Forward hooks that record each declared site of the model (``fmw.sites.declared``): its first
    input before, its output after, and its declared gate, if any."""
    owner = threading.get_ident()
    handles = []
    for module, declared in observation.index.declared:

        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any, declared: Declaration = declared) -> None:
            if threading.get_ident() != owner or not any(o is observation for o in STATE.observations):
                return
            if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            flush_products()  # the products made before it first, in order
            feature_map = inputs[0]
            gate, layout = None, None
            if declared.gate is not None:
                gate = declared.gate(module, inputs, output)
                layout = gate_layout(feature_map, gate) if isinstance(gate, torch.Tensor) else None
                if gate is None or layout is None:
                    shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
                    raise FMWError(
                        f"the gate declared for {type(module).__name__} (fmw.sites.declare_site) returned {shape}, "
                        f"which is not a gate of its input {tuple(feature_map.shape)}: return a tensor that "
                        "broadcasts to the input and varies over its channels, rows or columns, such as "
                        "(N, C, 1, 1) or (N, 1, H, W); or declare the site without a gate"
                    )
            observed = observation.note(feature_map, layout, False, _active_modules())
            if observed is None:
                return
            if observation.record is not None:
                observed.before = observation.record.keep_map(feature_map)
                observed.after = observation.record.keep_map(output)
                if gate is not None and layout is not None:
                    observed.gate = observation.record.copy(as_contract_gate(gate, feature_map, layout))

        handles.append(module.register_forward_hook(record))
    return handles


WATCH, QUIET = 0, 1  # the two roles a module's forward plays for the observations of a thread


class _Forwards:
    """Forward wrappers put on modules while some observation needs them (cheaper than a pair of
    hooks, whose presence sends every call of the module down ``nn.Module``'s slow path): one per
    module for all threads, removed when its last user is done. For the calling thread, a watched
    module's forward runs with the mode entered (the products are made in it), a quiet one's with
    the mode taken off the stack (``_State.hush``); for other threads, as it is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed: dict[int, tuple[nn.Module, _ForwardWrapper, int]] = {}  # id -> module, wrapper, users

    def add(self, module: nn.Module) -> None:
        key = id(module)
        with self.lock:
            entry = self.installed.get(key)
            if entry is not None and entry[0] is module:
                self.installed[key] = (module, entry[1], entry[2] + 1)
                return
            wrapper = _ForwardWrapper(module.forward, key, module.__dict__.get("forward", _ABSENT))
            module.__dict__["forward"] = wrapper
            self.installed[key] = (module, wrapper, 1)

    def remove(self, module: nn.Module) -> None:
        key = id(module)
        with self.lock:
            entry = self.installed.get(key)
            if entry is None or entry[0] is not module:
                return
            _, wrapper, users = entry
            if users > 1:
                self.installed[key] = (module, wrapper, users - 1)
                return
            del self.installed[key]
            if module.__dict__.get("forward") is wrapper:  # not replaced meanwhile by someone else
                if wrapper.previous is _ABSENT:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = wrapper.previous


_ABSENT = object()
_FORWARDS = _Forwards()


class _ForwardWrapper:
    """A module's forward while some observation needs it (``_Forwards``): for the calling thread,
    with the mode entered (a module that made products) or taken off the stack (one below it that
    made none); for every other thread, as it is. A copy of the module made meanwhile
    (``copy.deepcopy``) gets its own forward, not this wrapper of the original's."""

    __slots__ = ("forward", "key", "previous")

    def __init__(self, forward: Callable[..., Any], key: int, previous: object) -> None:
        self.forward = forward
        self.key = key  # id of the module wrapped
        self.previous = previous  # the forward the module's own __dict__ held, or _ABSENT

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward, state = self.forward, STATE
        roles = state.roles.get(self.key)
        if roles is None:
            return forward(*args, **kwargs)
        if roles[WATCH]:
            mode = state.mode if state.hushed else None
            if mode is not None:  # called from within a quiet module: put the mode back meanwhile
                mode.__enter__()
                try:
                    return forward(*args, **kwargs)
                finally:
                    mode.__exit__(None, None, None)
            state.activate(_WeightingMode)
            try:
                return forward(*args, **kwargs)
            finally:
                state.deactivate()
        if not state.depth:
            return forward(*args, **kwargs)
        state.hush()
        try:
            return forward(*args, **kwargs)
        finally:
            state.unhush()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        if self.previous is not _ABSENT:  # the user's own forward: copied as it would have been
            return copy.deepcopy(self.previous, memo)
        module = memo.get(self.key)  # the copy of the module being made, when it is one
        if isinstance(module, nn.Module):
            return types.MethodType(type(module).forward, module)
        return self


class _Within:
    """For one observation in one thread: ``modules`` watched and their quiet children unwatched
    (``_Forwards``); ``remove`` undoes it."""

    def __init__(self, modules: Sequence[nn.Module], index: ModelIndex | None = None) -> None:
        self.parts = [(module, WATCH) for module in dict.fromkeys(modules)]
        watched = [module for module, _ in self.parts]
        quiet = index.quiet_children(watched) if index is not None else quiet_children(watched)
        self.parts += [(module, QUIET) for module in quiet]
        for module, role in self.parts:
            _FORWARDS.add(module)
            roles = STATE.roles.setdefault(id(module), [0, 0])
            roles[role] += 1

    def remove(self) -> None:
        for module, role in self.parts:
            roles = STATE.roles.get(id(module))
            if roles is not None:
                roles[role] -= 1
                if not any(roles):
                    del STATE.roles[id(module)]
            _FORWARDS.remove(module)
        self.parts = []


@contextmanager
def suspended() -> Iterator[None]:
    """Within the block, the calling thread's observations see nothing: for a discovering pass run
    in the middle of another observation (``override_gates`` on a model not yet discovered)."""
    flush_products()
    saved, static = list(STATE.observations), dict(STATE.static)
    STATE.observations.clear()
    try:
        yield
    finally:
        STATE.observations[:] = saved
        STATE.static.update(static)
        STATE.update_deferrable()


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
    handles = _declared_hooks(observation)
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
    if within is None:  # what every operation derives from the parameters is followed only then
        STATE.static.update(observation.index.tensors)
    STATE.observations.append(observation)
    if within is None:
        STATE.activate(_WeightingMode)
        STATE.everything += 1
    STATE.update_deferrable()
    completed = False
    try:
        yield observation
        completed = True
    finally:
        if completed:
            flush_products()
        else:  # the forward raised: what it made is not wanted
            STATE.pending.clear()
        for handle in handles:
            handle.remove()
        if watching is not None:
            watching.remove()
        else:
            STATE.deactivate()
            STATE.everything -= 1
        STATE.observations[:] = [o for o in STATE.observations if o is not observation]
        STATE.update_deferrable()
        if not STATE.observations:
            STATE.static.clear()
