"""Comparing optional figures: a figure that may be None (a class specificity with one class, a
statistic of an empty split) is compared as None when the reference is None, else approximately."""

from __future__ import annotations

from typing import Any

import pytest


def approx_optional(expected: float | None, **tolerances: Any) -> object:
    """``None`` when ``expected`` is None (so ``value == approx_optional(None)`` holds only for a
    None value), else ``pytest.approx(expected, **tolerances)``."""
    return None if expected is None else pytest.approx(expected, **tolerances)
