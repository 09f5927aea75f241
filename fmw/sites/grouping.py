"""From the products of one forward pass to sites: which module each product belongs to, the
stages of each site in the order applied, and the site's kind.

The rule. Products that continue one another (the map of the second is the product of the first,
as CBAM's spatial stage continues its channel stage) or weight the same map (scSE's parallel
``x * cSE + x * sSE``) form a group. The group's site is the innermost running module, other than
a container (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) or the model itself, that
received the group's first map as its input while each of the group's products was made: the
layer that was handed the feature map and weighted it. When no module did (``y = conv(x) * scale``
inside a block), each product belongs to the module whose forward made it. Products assigned to
one module form one site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from fmw.sites.declared import declaration
from fmw.sites.index import ModelIndex
from fmw.sites.known import known_kind
from fmw.sites.recording import ObservedProduct
from fmw.sites.spec import SiteSpec, StageSpec

__all__ = ["SiteDraft", "group_products"]


@dataclass
class SiteDraft:
    """A site found in one pass: its spec and its products in order."""

    spec: SiteSpec
    products: list[ObservedProduct]


def _site_names(products: Sequence[ObservedProduct]) -> list[str]:
    groups: dict[int, list[ObservedProduct]] = {}
    for product in products:
        if product.layout is not None:
            groups.setdefault(product.root, []).append(product)
    owner: dict[int, str] = {}
    for members in groups.values():
        common = set(members[0].candidates).intersection(*(set(p.candidates) for p in members[1:]))
        innermost = [name for name in members[0].candidates if name in common]
        for product in members:
            owner[product.index] = innermost[-1] if innermost else product.maker
    return [owner.get(product.index, product.maker) for product in products]


def _stage_name(layout: str, taken: list[str]) -> str:
    """The layout's name, with _2, _3 for its repeats ("channel", "channel_2")."""
    count = sum(1 for name in taken if name == layout or name.removeprefix(f"{layout}_").isdigit())
    return layout if count == 0 else f"{layout}_{count + 1}"


def _kind(module: nn.Module, stages: Sequence[StageSpec]) -> str:
    declared = declaration(module)
    if declared is not None:
        return declared.kind
    named = known_kind(module)
    if named is not None:
        return named
    if not stages:
        return "none"
    parts: list[str] = []
    for stage in stages:
        part = "scale" if stage.static and stage.layout == "channel" else stage.layout
        if part not in parts:
            parts.append(part)
    return "+".join(parts)


def group_products(index: ModelIndex, products: Sequence[ObservedProduct]) -> list[SiteDraft]:
    """The sites of one pass of the model ``index`` describes, in the order their first product
    was made. A pass whose products match the last grouped pass's (maker, order, layout, static
    gate, chaining, running modules) gets that pass's sites again without regrouping."""
    signature = tuple((p.layout, p.static, p.maker, p.ordinal, p.root, p.candidates) for p in products)
    last = index.grouping
    if last is not None and last[0] == signature:
        return [SiteDraft(spec, [products[i] for i in positions]) for spec, positions in last[1]]
    drafts = _grouped(index, products)
    position = {id(product): i for i, product in enumerate(products)}
    index.grouping = (signature, [(draft.spec, [position[id(p)] for p in draft.products]) for draft in drafts])
    return drafts


def _grouped(index: ModelIndex, products: Sequence[ObservedProduct]) -> list[SiteDraft]:
    members: dict[str, list[ObservedProduct]] = {}
    for product, name in zip(products, _site_names(products), strict=True):
        members.setdefault(name, []).append(product)
    drafts = []
    for name, found in members.items():
        stages: list[StageSpec] = []
        for product in found:
            if product.layout is None:
                continue
            stage_name = _stage_name(product.layout, [stage.name for stage in stages])
            stages.append(StageSpec(stage_name, product.layout, product.static, product.maker, product.ordinal))
        module = index.module(name)
        spec = SiteSpec(name=name, kind=_kind(module, stages), module=module, stages=tuple(stages))
        drafts.append(SiteDraft(spec, [product for product in found if product.layout is not None] or found))
    return drafts
