"""Muon and the optimiser grouping of ``fmw train --optimizer muon``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmw.models import build_model
from fmw.training import Recipe
from fmw.training.optim import Muon, OptimizerGroup, orthogonalise
from fmw.training.trainer import backbone_filters, build_optimizer


@pytest.mark.parametrize("shape", [(64, 216), (128, 64), (8, 8)])
def test_orthogonalise_keeps_singular_vectors_and_pulls_singular_values_towards_one(shape):
    generator = torch.Generator().manual_seed(0)
    gaussian = orthogonalise(torch.randn(shape, generator=generator))
    assert gaussian.shape == shape and gaussian.dtype == torch.float32
    singular = torch.linalg.svdvals(gaussian)
    assert singular.min() > 0.6 and singular.max() < 1.2, singular  # measured: 0.67-1.14
    # a badly conditioned matrix, singular values from 1 down to 0.001
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=generator))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=generator))
    k = min(shape)
    matrix = u[:, :k] @ torch.diag(torch.logspace(0, -3, k)) @ v[:, :k].T
    result = orthogonalise(matrix)
    singular = torch.linalg.svdvals(result)
    # five iterations of the published quintic do not converge: the weakest directions are raised
    # more than 200-fold, not all the way to 1
    assert singular.max() < 1.25 and singular.min() > 0.2, singular
    # the same singular vectors: U^T R V is diagonal up to bfloat16 rounding, with positive entries
    projected = u[:, :k].T @ result @ v[:, :k]
    off_diagonal = projected - torch.diag(torch.diagonal(projected))
    assert off_diagonal.abs().max() < 0.15 and torch.diagonal(projected).min() > 0.2


def test_orthogonalise_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D matrix"):
        orthogonalise(torch.ones(2, 2, 2))


def test_muon_rescales_each_filter_bank_then_steps_by_an_orthogonal_update():
    conv = nn.Conv2d(4, 6, 3, bias=False)
    optimizer = Muon([conv.weight], lr=0.0, momentum=0.6)
    conv(torch.randn(2, 4, 8, 8)).square().sum().backward()
    optimizer.step()
    assert conv.weight.norm().item() == pytest.approx(math.sqrt(6), rel=1e-5), "lr 0: only the rescaling"
    before = conv.weight.detach().clone()
    optimizer.param_groups[0]["lr"] = 0.1
    optimizer.step()  # same gradient again: momentum buffer now 1.6 g, Nesterov update g + 0.6 * 1.6 g
    step = (before - conv.weight.detach()) / 0.1
    expected = orthogonalise((conv.weight.grad * (1 + 0.6 * 1.6)).reshape(6, -1)).view_as(step)
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="not a tensor of shape"):
        Muon([nn.Parameter(torch.ones(3))], lr=0.1)


def test_muon_recipe_splits_the_parameters_between_the_two_optimisers():
    model = build_model(weighting="cbam", widths=(8, 8))
    sgd_only = build_optimizer(model, Recipe(weighting="cbam"))
    assert isinstance(sgd_only, torch.optim.SGD)
    combined = build_optimizer(model, Recipe(weighting="cbam", optimizer="muon", muon_lr=0.3))
    assert isinstance(combined, OptimizerGroup)
    sgd, muon = combined.optimizers
    filters = backbone_filters(model)
    assert len(filters) == 4 and all(p.dim() == 4 and p.shape[-1] == 3 for p in filters)
    assert [id(p) for p in muon.param_groups[0]["params"]] == [id(p) for p in filters]
    in_sgd = [id(p) for group in sgd.param_groups for p in group["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(in_sgd + [id(p) for p in filters]) == sorted(trainable), "every parameter in exactly one"
    weighting = {id(p) for block in model.stages for p in block.weighting.parameters()}
    assert weighting and weighting <= set(in_sgd), "the weighting layers' own parameters stay with SGD"
    assert muon.param_groups[0]["peak_lr"] == 0.3 and len(combined.param_groups) == len(sgd.param_groups) + 1
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer(model, Recipe(optimizer="adam"))
