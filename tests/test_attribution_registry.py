"""The attribution registry (fmw.analysis.attribution.ATTRIBUTION_METHODS): every method runs on a small fmw
model through it, the command line offers exactly its input methods, and no page or command picks a method by
comparing its name outside the registry."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from fmw.analysis.attribution import (
    ATTRIBUTION_METHODS,
    INPUT_METHODS,
    LAYER_METHODS,
    AttributionMethod,
    attribute_input,
    attribute_site,
    attribution_method,
)
from fmw.cli.report import build_parser
from fmw.export.report import NO_ATTRIBUTION
from fmw.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SITE = "stages.1.weighting"


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(weighting="cbam", stem_width=4, widths=(8, 8), num_classes=3).eval()


def test_every_method_declares_what_pages_and_commands_read():
    assert list(ATTRIBUTION_METHODS) == [*INPUT_METHODS, *LAYER_METHODS]
    for name, method in ATTRIBUTION_METHODS.items():
        assert isinstance(method, AttributionMethod) and method.name == name
        assert method.title and method.description and not method.description.endswith(".")
        assert method.stepped == ("n_steps" in method.options)
        assert attribution_method(name) is method
    assert [m.name for m in ATTRIBUTION_METHODS.values() if m.stepped] == ["integrated_gradients", "conductance"]


@pytest.mark.parametrize("name", list(ATTRIBUTION_METHODS))
def test_every_registered_method_runs_on_a_small_fmw_model(name):
    model, inputs = tiny_model(), torch.randn(2, 3, 16, 16)
    method = ATTRIBUTION_METHODS[name]
    fractions: list[float] = []
    options = {"n_steps": 4, "internal_batch_size": 8, "progress": fractions.append}
    if method.at_site:
        result = attribute_site(model, inputs, SITE, name, **options)
        assert result.method == name and result.site == SITE
        assert result.before.shape[0] == 2 and result.after.shape == result.before.shape
        assert np.isfinite(result.maps_before).all() and np.isfinite(result.maps_after).all()
    else:
        result = attribute_input(model, inputs, name, window=4, stride=4, **options)
        assert result.method == name and result.attributions.shape == (2, 3, 16, 16)
        assert np.isfinite(result.maps).all()
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    wrong_kind = attribute_input if method.at_site else partial(attribute_site, site=SITE)
    with pytest.raises(ValueError, match=r"unknown (layer|input) attribution method"):
        wrong_kind(model, inputs, method=name)


def test_the_report_command_offers_the_registrys_input_methods():
    (action,) = [a for a in build_parser()._actions if a.dest == "attribution"]
    assert list(action.choices or []) == [*INPUT_METHODS, NO_ATTRIBUTION]
    assert action.help is not None
    for name in INPUT_METHODS:
        assert ATTRIBUTION_METHODS[name].description in action.help


def test_no_method_is_picked_by_its_name_outside_the_registry():
    names = "|".join(ATTRIBUTION_METHODS)
    comparison = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("fmw", "dashboard")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "attribution.py" or path.parent.name != "analysis"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if comparison.search(line)
    ]
    assert found == []
