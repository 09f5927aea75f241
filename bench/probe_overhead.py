"""Benchmark: fmw.sites.probe against a plain forward pass of the same model (fmw channel and CBAM models,
torchvision's mobilenet_v3_small, random weights), batch 1 and 32 at 32 and 224 px; target <= 1.15x.

Run: python -m bench.probe_overhead [--repeats 7] [--threads 1]
Plain and probed passes alternate, so both see the same machine load; medians are reported.
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

from bench.timing import interleaved_medians
from fmw.models import build_model
from fmw.sites import probe

TARGET = 1.15
BATCHES = (1, 32)
SIZES = (32, 224)


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "fmw channel": build_model(weighting="channel").eval(),
        "fmw cbam": build_model(weighting="cbam").eval(),
        "mobilenet_v3_small": mobilenet_v3_small(weights=None).eval(),
    }


def plain(model: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


def probed(model: nn.Module, images: torch.Tensor) -> None:
    probe(model, images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per case (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dashboard uses 1)")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, {arguments.threads} thread(s), "
        f"median of {arguments.repeats}, target probe/plain <= {TARGET}x"
    )
    print(f"{'model':>20} {'batch':>5} {'px':>4} | {'plain':>10} {'probe':>10} {'ratio':>6}")
    worst = 0.0
    for name, model in models().items():
        for size in SIZES:
            for batch in BATCHES:
                images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch + size))
                medians = interleaved_medians(
                    {
                        "plain": lambda model=model, images=images: plain(model, images),
                        "probe": lambda model=model, images=images: probed(model, images),
                    },
                    arguments.repeats,
                    warmup=1,
                )
                plain_s, probe_s = medians["plain"], medians["probe"]
                ratio = probe_s / plain_s
                worst = max(worst, ratio)
                print(
                    f"{name:>20} {batch:>5} {size:>4} | "
                    f"{plain_s * 1e3:>7.1f} ms {probe_s * 1e3:>7.1f} ms {ratio:>5.2f}x"
                )
    print(f"worst ratio {worst:.2f}x: {'meets' if worst <= TARGET else 'misses'} the {TARGET}x target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
