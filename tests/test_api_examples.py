"""The examples in the public API's docstrings run and print what they say (``doctest``)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["fmw.sites.probe", "fmw.sites.declared"]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    outcome = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.failed == 0
    assert outcome.attempted >= 5, f"{name} has no examples to run"
