"""Optimisers of ``fmw train`` beyond torch's SGD.

``Muon`` follows the published Muon method (Keller Jordan et al., 2024, "Muon: an optimizer for
hidden layers in neural networks", and its use for the convolution filters of the airbench94_muon
CIFAR-10 record; facts taken, code our own): Nesterov momentum on the gradient, then the update
matrix (one row per output channel) replaced by an approximately orthogonal matrix with the same
singular vectors, computed by a few Newton-Schulz iterations; each filter bank is rescaled to a
fixed norm before the step, in place of weight decay. The network's BatchNorm after every
convolution makes the filters' scale irrelevant to the function, so only their direction is
learned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import overload

import torch

__all__ = ["Muon", "OptimizerGroup", "TrainingOptimizer", "orthogonalise"]

# Quintic Newton-Schulz coefficients published with Muon, chosen for speed over convergence: five
# iterations bring singular values near 1 without converging exactly (tests/test_optim.py checks
# the range they land in).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalise(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately orthogonal matrix with ``matrix``'s singular vectors (U V^T of its SVD, up to
    singular values near 1), by ``steps`` Newton-Schulz iterations in bfloat16; float32 out."""
    if matrix.dim() != 2:
        raise ValueError(f"orthogonalise takes a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NEWTON_SCHULZ
    x = matrix.to(torch.bfloat16)
    x = x / (x.norm() + 1e-7)  # Frobenius norm >= spectral norm: singular values now in [0, 1]
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalised updates for weight tensors whose first dimension is the output
    (a convolution's (out, in, k, k) is treated as an (out, in*k*k) matrix). Every step first
    rescales each weight to Frobenius norm sqrt(out), then subtracts ``lr`` x the orthogonalised
    Nesterov momentum. No weight decay: the rescaling bounds the weights instead."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.6, nesterov: bool = True) -> None:
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr >= 0 and 0 <= momentum < 1, got lr={lr}, momentum={momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.dim() < 2:
                    raise ValueError(
                        f"Muon updates matrices and filter banks, not a tensor of shape {tuple(parameter.shape)}"
                    )

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            momentum, lr = group["momentum"], group["lr"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad.float()
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(gradient)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(gradient)
                update = gradient.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                outputs = parameter.shape[0]
                parameter.mul_(math.sqrt(outputs) / (parameter.norm() + 1e-12))
                parameter.add_(
                    orthogonalise(update.reshape(outputs, -1)).view_as(parameter).to(parameter.dtype), alpha=-lr
                )
        return loss


class OptimizerGroup:
    """Several optimisers stepped as one: ``param_groups`` lists all their groups (so a schedule
    sets every rate in one loop), ``zero_grad`` and ``step`` call each in turn."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = [optimizer for optimizer in optimizers if optimizer.param_groups]

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


# what ``fmw.training.trainer.build_optimizer`` returns and the training loop steps
TrainingOptimizer = torch.optim.Optimizer | OptimizerGroup
