"""Benchmark: fmw's probe (with discovery) against a plain forward pass of the same model, in one
process: the fmw family (channel and CBAM networks, 32 px) and torchvision models with several
discovered sites (mobilenet_v3_small: 9 SE sites, efficientnet_b0: 16; 224 px), random weights,
batch 1 and 32. Targets: probe/plain <= 1.3x at batch 1 and <= 1.15x at batch 32.

Two costs are reported. "probe": the steady state, a model probed before (its sites are known, so
only the operations inside the modules that made its products are watched). "discovery": the first
probe of a model (or of one whose modules changed), which watches every operation.

Run: python -m bench.probe_overhead [--repeats 7] [--threads 1] [--keep-freed-memory]
Plain and probed passes alternate, so both see the same machine load; medians are reported.

At batch 32 most of the probe's extra time is the kernel handing out fresh zeroed pages for the
records it returns (before and after of every site; the "records" column gives their size), which
a plain pass frees as it goes and glibc's allocator then gives back to the
system. ``--keep-freed-memory`` reruns the benchmark with glibc told to keep freed memory for reuse
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), which separates that cost from fmw's own
work; it also speeds the plain pass itself up at large batches.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchvision.models import efficientnet_b0, mobilenet_v3_small

from bench.timing import interleaved_medians
from fmw.models import build_model
from fmw.sites import find_sites, probe

TARGETS = {1: 1.3, 32: 1.15}
# glibc: serve every allocation from the heap and never trim it, so freed pages are reused
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36)}


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
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="rerun with glibc keeping freed memory for reuse (see the module's docstring)",
    )
    arguments = parser.parse_args(argv)
    keeping = all(os.environ.get(name) == value for name, value in KEEP_FREED_MEMORY.items())
    if arguments.keep_freed_memory and not keeping:  # the allocator reads them at start-up: start again
        command = [sys.executable, "-m", "bench.probe_overhead", *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, command, {**os.environ, **KEEP_FREED_MEMORY})
    torch.set_num_threads(arguments.threads)
    allocator = "glibc keeping freed memory" if keeping else "default allocator"
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, {arguments.threads} thread(s), "
        f"{allocator}, median of {arguments.repeats}; "
        f"targets probe/plain <= {TARGETS[1]}x at batch 1, <= {TARGETS[32]}x at 32"
    )
    print(
        f"{'model':>20} {'batch':>5} {'px':>4} {'sites':>5} {'records':>8} | {'plain':>10} {'probe':>10} {'ratio':>6} "
        "| discovery"
    )
    misses = []
    for name, (build, size) in cases().items():
        torch.manual_seed(0)
        model = build().eval()
        for batch in TARGETS:
            images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch + size))
            records = probe(model, images).sites
            held = sum(tensor.numel() * tensor.element_size() for r in records for tensor in (r.before, r.after))
            sites = len(records)
            del records  # not kept alive while timing
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
                f"{name:>20} {batch:>5} {size:>4} {sites:>5} {held / 1e6:>5.1f} MB | "
                f"{medians['plain'] * 1e3:>7.1f} ms "
                f"{medians['probe'] * 1e3:>7.1f} ms {ratio:>5.2f}x | {medians['discovery'] / medians['plain']:>5.2f}x"
            )
    print("every case meets its target" if not misses else f"over the target: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
