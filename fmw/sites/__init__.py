"""Weighting sites: what a site is, how fmw finds the sites of a model, and the probe that records
what each did in a forward pass (``probe``) or replaces its gates (``override_gates``)."""

from __future__ import annotations

from fmw.sites.depth import SiteDepth, match_sites, site_depths
from fmw.sites.finding import find_sites
from fmw.sites.probe import GateReplacement, ProbeResult, SiteRecord, override_gates, probe, select_sites
from fmw.sites.spec import GateSpec, SiteSpec

__all__ = [
    "GateReplacement",
    "GateSpec",
    "ProbeResult",
    "SiteDepth",
    "SiteRecord",
    "SiteSpec",
    "find_sites",
    "match_sites",
    "override_gates",
    "probe",
    "select_sites",
    "site_depths",
]
