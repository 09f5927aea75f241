"""The server's caches, bounded by bytes (no streamlit here): opened models and the results the views
reuse (decoded uploads, analyses, prepared inputs) are held by reference, never pickled, and the
least recently used entries are dropped once a cache holds more than its budget.

Budgets (environment variables, in MB): ``FMW_RESULT_CACHE_MB`` (default 512) for decoded uploads,
analyses and prepared inputs, ``FMW_MODEL_CACHE_MB`` (default 1024) for opened models' parameters
and buffers. Entries are shared by every session; their keys name the model (uploaded models by a
session-private key) and the image's digest, so no session reaches another's uploads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

Value = TypeVar("Value")
RESULT_BUDGET_VARIABLE = "FMW_RESULT_CACHE_MB"
MODEL_BUDGET_VARIABLE = "FMW_MODEL_CACHE_MB"
DEFAULT_RESULT_BUDGET_MB = 512
DEFAULT_MODEL_BUDGET_MB = 1024
MB = 1 << 20


def nbytes(value: Any, seen: set[int] | None = None) -> int:
    """The bytes held by the arrays and tensors in ``value``: numpy arrays, torch tensors, bytes, and
    what dataclasses, lists, tuples and dicts hold (each object counted once)."""
    seen = set() if seen is None else seen
    if id(value) in seen or value is None or isinstance(value, (str, int, float, bool)):
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes if value.base is None or id(value.base) not in seen else 0
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor, without importing torch
        return int(value.element_size() * value.nelement())
    if hasattr(value, "parameters") and hasattr(value, "buffers"):  # an nn.Module
        return sum(nbytes(tensor, seen) for tensor in [*value.parameters(), *value.buffers()])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, field.name), seen) for field in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(nbytes(item, seen) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes(item, seen) for item in value)
    return 0


def budget_bytes(variable: str, default_mb: int) -> int:
    """The budget the environment variable ``variable`` sets (MB), else ``default_mb``."""
    text = os.environ.get(variable, "").strip()
    try:
        megabytes = float(text) if text else float(default_mb)
    except ValueError:
        raise ValueError(f"{variable}={text!r}: give the budget in MB, e.g. {variable}={default_mb}") from None
    return int(megabytes * MB)


class ByteBoundedCache(Generic[Value]):
    """A thread-safe least-recently-used cache whose entries together hold at most ``budget()`` bytes
    (``nbytes`` of each value); a value larger than the whole budget is returned but not kept."""

    def __init__(self, budget: Callable[[], int]) -> None:
        self._budget = budget
        self._entries: OrderedDict[Hashable, tuple[Value, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.held = 0

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: Hashable, value: Value) -> Value:
        size, budget = nbytes(value), self._budget()
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.held -= previous[1]
            if size <= budget:
                self._entries[key] = (value, size)
                self.held += size
            while self.held > budget and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.held -= dropped
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """The value cached under ``key``, else ``compute()``'s, kept for next time."""
        found = self.get(key)
        return found if found is not None else self.put(key, compute())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.held = 0

    def __len__(self) -> int:
        return len(self._entries)


RESULTS: ByteBoundedCache[Any] = ByteBoundedCache(
    lambda: budget_bytes(RESULT_BUDGET_VARIABLE, DEFAULT_RESULT_BUDGET_MB)
)
MODELS: ByteBoundedCache[Any] = ByteBoundedCache(lambda: budget_bytes(MODEL_BUDGET_VARIABLE, DEFAULT_MODEL_BUDGET_MB))
