"""Weighting sites: what a site is, how fmw finds the sites of any CNN by what it computes, and the
probe that records what each did in a forward pass (``probe``) or replaces its gates
(``override_gates``)."""

from __future__ import annotations

from fmw.sites.declared import declare_site, forget_site
from fmw.sites.depth import SiteDepth, match_sites, site_depths
from fmw.sites.inputs import Inputs, ModelInputs
from fmw.sites.probe import (
    NOTHING_FOUND,
    GateReplacement,
    ProbeResult,
    SiteRecord,
    find_sites,
    observation_points,
    override_gates,
    probe,
    select_sites,
)
from fmw.sites.spec import SiteSpec, StageSpec

__all__ = [
    "NOTHING_FOUND",
    "GateReplacement",
    "Inputs",
    "ModelInputs",
    "ProbeResult",
    "SiteDepth",
    "SiteRecord",
    "SiteSpec",
    "StageSpec",
    "declare_site",
    "find_sites",
    "forget_site",
    "match_sites",
    "observation_points",
    "override_gates",
    "probe",
    "select_sites",
    "site_depths",
]
