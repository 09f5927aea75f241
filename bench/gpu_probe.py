"""Benchmark: probe throughput (images per second) on CUDA against the CPU, a batch of 64 images
at 224 px, for torchvision's mobilenet_v3_small and the fmw CBAM model (random weights).

Run: python -m bench.gpu_probe [--repeats 5]   (exits with a message when there is no CUDA device)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

from fmw.models import build_model
from fmw.sites import probe

BATCH, SIZE = 64, 224


def images_per_second(model: nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Median throughput of ``probe`` (results copied back to the CPU, as the dashboard uses them)."""
    probe(model, images)
    times = []
    for _ in range(repeats):
        if images.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        probe(model, images)
        times.append(time.perf_counter() - start)
    return images.shape[0] / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed probes per device (median reported)")
    arguments = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("not run: no CUDA device on this machine (torch.cuda.is_available() is False)")
        return 1
    print(
        f"cuda: {torch.cuda.get_device_name()}; cpu: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; batch {BATCH} at {SIZE} px, median of {arguments.repeats}"
    )
    torch.manual_seed(0)
    for name, model in {
        "mobilenet_v3_small": mobilenet_v3_small(weights=None),
        "fmw cbam": build_model(weighting="cbam"),
    }.items():
        images = torch.randn(BATCH, 3, SIZE, SIZE)
        cpu = images_per_second(model.eval(), images, arguments.repeats)
        cuda = images_per_second(model.to("cuda"), images.to("cuda"), arguments.repeats)
        print(f"{name:>20}: cpu {cpu:8.1f} images/s, cuda {cuda:8.1f} images/s, ratio {cuda / cpu:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
