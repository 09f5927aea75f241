"""The examples in the public API's docstrings run and print what they say (``doctest``): the modules
of ``fmw.sites``' probe and declared sites, ``fmw.analysis``' own, those of the other functions ``fmw``
exports, and one example at least for every public function of ``fmw`` and of ``fmw.analysis``."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import fmw
import fmw.analysis

# module -> how many examples it has at least
MODULES = {
    "fmw.sites.probe": 5,
    "fmw.sites.declared": 5,
    "fmw.sites.depth": 1,
    "fmw.analysis": 1,
    "fmw.analysis.batch": 2,
    "fmw.analysis.cards": 1,
    "fmw.analysis.changes": 4,
    "fmw.analysis.checkpoints": 1,
    "fmw.analysis.findings": 1,
    "fmw.analysis.images": 2,
    "fmw.analysis.memory": 2,
    "fmw.analysis.preparation": 2,
    "fmw.analysis.summaries": 1,
    "fmw.layers.registry": 1,
    "fmw.io.checkpoint": 1,
    "fmw.io.model_spec": 1,
    "fmw.notebook": 1,
}
ANALYSIS_FUNCTIONS = [name for name in fmw.analysis.__all__ if inspect.isfunction(getattr(fmw.analysis, name))]
TOP_FUNCTIONS = [name for name in fmw.__all__ if inspect.isfunction(getattr(fmw, name))]


@pytest.mark.parametrize(("name", "minimum"), MODULES.items())
def test_the_docstring_examples_run(name: str, minimum: int) -> None:
    module = importlib.import_module(name)
    outcome = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.failed == 0
    assert outcome.attempted >= minimum, f"{name} has no examples to run"


@pytest.mark.parametrize("name", ANALYSIS_FUNCTIONS)
def test_every_public_analysis_function_shows_what_it_returns(name: str) -> None:
    """Its docstring has Args, Returns and an example, run by the modules above, that prints a result."""
    function = getattr(fmw.analysis, name)
    assert function.__module__ in MODULES, f"{name}'s module is not run above"
    text = inspect.getdoc(function) or ""
    assert "Args:" in text and "Returns:" in text and "Examples:" in text, name
    (test,) = doctest.DocTestFinder().find(function, name, module=False, globs={})
    assert any(example.want for example in test.examples), f"{name}'s example prints nothing to check"


@pytest.mark.parametrize("name", TOP_FUNCTIONS)
def test_every_function_fmw_exports_shows_what_it_returns(name: str) -> None:
    """Its docstring has Args, Returns (Yields for a context manager; neither for a function returning
    None) and an example, run by the modules above, that prints a result."""
    function = getattr(fmw, name)
    assert function.__module__ in MODULES, f"{name}'s module is not run above"
    text = inspect.getdoc(function) or ""
    returns_none = inspect.signature(function).return_annotation in (None, "None")
    assert "Args:" in text and "Example" in text, name
    assert returns_none or "Returns:" in text or "Yields:" in text, name
    (test,) = doctest.DocTestFinder().find(function, name, module=False, globs={})
    assert any(example.want for example in test.examples), f"{name}'s example prints nothing to check"
