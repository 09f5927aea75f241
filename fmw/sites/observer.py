"""One observation: what one context does with the weighting products of its model's forward
passes. It may record them (the probe), replace gates (``override_gates``) and route a site's two
sides through identity modules that attribution methods can hook (``points``). For each product
it notes the modules running (outer to inner), decides whether it is weighting (while discovering,
by its lineage; afterwards, as discovery decided), whether its gate is static, and which earlier
product it continues. ``fmw.sites.mode`` runs the observations of a thread.

The calling thread's state is here too (``STATE``): its observations, the tensors known not to
depend on the input, the one mode that serves them and how it is entered, and the products whose
bookkeeping waits. PyTorch keeps the mode stack per thread, and so does this."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fmw.sites.index import IndexedModule, ModelIndex, StageKey, model_index
from fmw.sites.lineage import Decision, Lineage, MappedFrame
from fmw.sites.products import Layout, WeightingProduct
from fmw.sites.recording import Keeper, ObservedProduct

__all__ = ["STATE", "Fill", "Observation", "arguments_static", "current_lineage", "is_static", "mark_static"]

Fill = Callable[[StageKey, Layout], "float | torch.Tensor | None"]


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
            self.lineage = Lineage(STATE.static)

    def _made(self, active: list[tuple[int, Any]]) -> tuple[list[tuple[IndexedModule, Any]], str, int] | None:
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
            # discovering pass, which remembers it for the passes that watch less); for a product
            # discovery did not see, only a gate that is itself a parameter or buffer is static
            gate = args[product.gate_index]
            gate_static = is_static(gate, STATE.static) or is_static(gate, self.index.tensors)
            if self.lineage is not None:
                self.decisions[(maker, ordinal)] = replace(decision, static=gate_static)
        feature_map = args[product.map_index]
        layout = frame.layout if frame is not None else product.layout
        observed = self._register(root if root is not None else feature_map, layout, gate_static, mine, maker, ordinal)
        observed.note = decision.note if frame is None else frame.note
        return observed, product, frame, root

    def _decide(
        self, product: WeightingProduct, args: tuple[Any, ...], mine: list[tuple[IndexedModule, Any]], lineage: Lineage
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
        mine: list[tuple[IndexedModule, Any]],
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


def _stacked_note(feature_map: torch.Tensor) -> str:
    n, k, c, h, w = feature_map.shape
    return (
        f"{k} branch maps stacked as ({n}, {k}, {c}, {h}, {w}) with one channel gate each; shown as one "
        f"({n}, {k * c}, {h}, {w}) map, branch b on channels b*{c} to b*{c}+{c - 1}"
    )


class _State(threading.local):
    """The calling thread's observations, the tensors known not to depend on the input, and the
    one mode that serves them (entered while ``depth`` > 0)."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.static: dict[int, weakref.ref[torch.Tensor]] = {}
        self.mode: TorchFunctionMode | None = None  # entered: on the stack unless hushed
        self.spare: TorchFunctionMode | None = None  # the thread's one mode, entered or not
        self.depth = 0
        self.everything = 0  # observations that watch every operation (a discovering pass among them)
        self.hushes: list[bool] = []  # per quiet module running: whether it took the mode off the stack
        self.hushed = 0  # how many of them did
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

    def activate(self, make_mode: Callable[[], TorchFunctionMode]) -> None:
        """Enter the mode (one ``make_mode()`` per thread, serving all its observations) if it is not
        entered yet."""
        if self.depth == 0:
            if self.spare is None:
                self.spare = make_mode()
            self.mode = self.spare
            _push_stack(self.mode)
        self.depth += 1

    def deactivate(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.mode is not None:
            _pop_stack()
            self.mode = None

    def hush(self) -> None:
        """Take the mode off the stack while a module that makes no product runs (``_Within``);
        only when it is on top (nothing entered above it) and no observation watches everything.
        (What ``TorchFunctionMode.__exit__`` and ``__enter__`` do, called directly: this runs
        around every such module.)"""
        mode = self.mode
        hushed = False
        if mode is not None and not self.everything and not self.hushed:
            depth = _stack_depth()
            hushed = depth > 0 and _stack_at(depth - 1) is mode
            if hushed:
                _pop_stack()
                self.hushed += 1
        self.hushes.append(hushed)

    def unhush(self) -> None:
        if self.hushes and self.hushes.pop() and self.mode is not None:
            self.hushed -= 1
            _push_stack(self.mode)


STATE = _State()
_stack_depth = torch._C._len_torch_function_stack
_stack_at = torch._C._get_function_stack_at
_pop_stack = torch._C._pop_torch_function_stack
_push_stack = torch._C._push_on_torch_function_stack


def is_static(value: object, static: dict[int, weakref.ref[torch.Tensor]]) -> bool:
    reference = static.get(id(value))
    return reference is not None and reference() is value


def arguments_static(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], static: dict[int, weakref.ref[torch.Tensor]]
) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            if not is_static(value, static):
                return False
        elif isinstance(value, (list, tuple)) and any(
            isinstance(item, torch.Tensor) and not is_static(item, static) for item in value
        ):
            return False
    return True


def mark_static(output: object, static: dict[int, weakref.ref[torch.Tensor]]) -> None:
    if isinstance(output, torch.Tensor):
        static[id(output)] = weakref.ref(output)
    elif isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                static[id(item)] = weakref.ref(item)


def current_lineage() -> Lineage | None:
    for observation in STATE.observations:
        if observation.lineage is not None:
            return observation.lineage
    return None
