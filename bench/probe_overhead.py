"""Benchmark: fmw's probe (with discovery) against a plain forward pass of the same model, in one
process: the fmw family (channel and CBAM networks, 32 px) and torchvision models with several
discovered sites (mobilenet_v3_small: 9 SE sites, efficientnet_b0: 16; 224 px), random weights,
batch 1 and 32. Targets: probe/plain <= 1.3x at batch 1 and <= 1.15x at batch 32.

Two costs are reported. "probe": the steady state, a model probed before (its sites are known, so
only the operations inside the modules that made its products are watched). "discovery": the first
probe of a model (or of one whose modules changed), which watches every operation.

Run: python -m bench.probe_overhead [--repeats 7] [--threads 1]
Plain and probed passes alternate, so both see the same machine load; medians are reported.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchvision.models import efficientnet_b0, mobilenet_v3_small

from bench.timing import interleaved_medians
from fmw.models import build_model
from fmw.sites import find_sites, probe

TARGETS = {1: 1.3, 32: 1.15}


def cases() -> dict[str, tuple[Callable[[], nn.Module], int]]:
    """Name -> (builder, input side in px): each network at the size it is made for."""
    return {
        "fmw channel": (lambda: build_model(weighting="channel"), 32),
        "fmw cbam": (lambda: build_model(weighting="cbam"), 32),
        "mobilenet_v3_small": (lambda: mobilenet_v3_small(weights=None), 224),
        "efficientnet_b0": (lambda: efficientnet_b0(weights=None), 224),
    }


def plain(model: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


def probed(model: nn.Module, images: torch.Tensor) -> None:
    probe(model, images)


def discovered(model: nn.Module, images: torch.Tensor) -> None:
    """A first probe: every operation watched (``find_sites`` with an example always discovers)."""
    find_sites(model, example=images, rediscover=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per case (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dashboard uses 1)")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, {arguments.threads} thread(s), "
        f"median of {arguments.repeats}; targets probe/plain <= {TARGETS[1]}x at batch 1, <= {TARGETS[32]}x at 32"
    )
    print(f"{'model':>20} {'batch':>5} {'px':>4} {'sites':>5} | {'plain':>10} {'probe':>10} {'ratio':>6} | discovery")
    misses = []
    for name, (build, size) in cases().items():
        torch.manual_seed(0)
        model = build().eval()
        for batch in TARGETS:
            images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch + size))
            sites = len(probe(model, images).sites)
            medians = interleaved_medians(
                {
                    "plain": partial(plain, model, images),
                    "probe": partial(probed, model, images),
                    "discovery": partial(discovered, model, images),
                },
                arguments.repeats,
                warmup=1,
            )
            ratio = medians["probe"] / medians["plain"]
            if ratio > TARGETS[batch]:
                misses.append(f"{name} at batch {batch}")
            print(
                f"{name:>20} {batch:>5} {size:>4} {sites:>5} | {medians['plain'] * 1e3:>7.1f} ms "
                f"{medians['probe'] * 1e3:>7.1f} ms {ratio:>5.2f}x | {medians['discovery'] / medians['plain']:>5.2f}x"
            )
    print("every case meets its target" if not misses else f"over the target: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
