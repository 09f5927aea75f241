"""Benchmark: fmw's probe (with discovery) against a plain forward pass of the same model, in one
process: the fmw family (channel and CBAM networks, 32 px) and torchvision models with several
discovered sites (mobilenet_v3_small: 9 SE sites, efficientnet_b0: 16; 224 px), timm's ResNet-18
with coordinate and full-size gates (64 px), random weights, batch 1 and 32; and at batch 1 a
detector and a segmenter (fasterrcnn_mobilenet_v3_large_320_fpn, given a list of one image, and
lraspp_mobilenet_v3_large; 320 px, weights=None and weights_backbone=None). Targets: probe/plain
<= 1.3x at batch 1 and <= 1.15x at batch 32.

Two costs are reported. "probe": the steady state, a model probed before (its sites are known, so
only the operations inside the modules that made its products are watched). "discovery": the first
probe of a model (or of one whose modules changed), which watches every operation. Beside them,
"watch all" is a plain pass under a bare ``TorchFunctionMode`` that sees every operation and does
nothing else: the floor of any tool that watches everything, which the steady state should beat.

Run: python -m bench.probe_overhead [--repeats 5] [--in-a-row 3] [--threads 1] [--keep-freed-memory]
     [--cases NAME ...] [--batches 1 32]
Every round runs each variant --in-a-row times in a row after one uncounted run, as a loop of it
would (a run that follows another variant inherits that variant's heap, which swings a batch-32
pass by more than the targets allow); rounds alternate the variants so that all see the same
machine load, and medians are reported. "plain again" is a second plain variant: its ratio to the
first is the measurement's own noise. "faults" are the minor page faults of one pass.

At batch 32 most of the probe's extra time is the kernel handing out fresh zeroed pages: the probe
returns the before and after of every site (the "records" column gives their size), tensors a plain
pass frees as it goes, and glibc's allocator gives the memory of the pass back to the system at its
end, so the next pass faults it in again. ``--keep-freed-memory`` runs with
``fmw.memory.keep_freed_memory()`` (what the ``fmw`` command line does), which separates that cost
from fmw's own work; it also speeds the plain pass itself up at large batches.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torchvision.models import efficientnet_b0, mobilenet_v3_small
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from bench.timing import medians_in_rounds
from fmw.memory import keep_freed_memory
from fmw.models import build_model
from fmw.sites import find_sites, probe

TARGETS = {1: 1.3, 32: 1.15}


@dataclass(frozen=True)
class Case:
    """One network: its builder, the input side in px it is made for, the batch sizes measured and
    whether it takes a list of (3, H, W) images (torchvision's detectors) instead of a batch."""

    build: Callable[[], nn.Module]
    size: int
    batches: tuple[int, ...] = (1, 32)
    image_list: bool = False


def cases() -> dict[str, Case]:
    """Name -> its case."""
    return {
        "fmw channel": Case(lambda: build_model(weighting="channel"), 32),
        "fmw cbam": Case(lambda: build_model(weighting="cbam"), 32),
        "mobilenet_v3_small": Case(lambda: mobilenet_v3_small(weights=None), 224),
        "efficientnet_b0": Case(lambda: efficientnet_b0(weights=None), 224),
        "timm r18 coord+full": Case(_coordinate_and_full_resnet, 64),
        "fasterrcnn_mbv3_320": Case(
            lambda: fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None), 320, (1,), True
        ),
        "lraspp_mbv3": Case(lambda: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None), 320, (1,)),
    }


def _coordinate_and_full_resnet() -> nn.Module:
    """timm's ResNet-18 with coordinate attention (coord_w and coord_h gates) in its first four
    blocks and its simple variant (one full-size gate) in the last four: 8 sites, 12 gates."""
    import timm

    model = timm.create_model("resnet18", pretrained=False, block_args={"attn_layer": "coord"})
    full = timm.create_model("resnet18", pretrained=False, block_args={"attn_layer": "scoord"})
    for name in ("layer3.0.se", "layer3.1.se", "layer4.0.se", "layer4.1.se"):
        model.set_submodule(name, full.get_submodule(name))
    return model


def plain(model: nn.Module, images: Any) -> None:
    with torch.no_grad():
        model(images)


class WatchEverything(TorchFunctionMode):
    """The least a tool that watches every operation can do: see each one and run it."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        return func(*args, **(kwargs or {}))


def watched(model: nn.Module, images: Any) -> None:
    """A plain pass with every operation seen by a bare ``TorchFunctionMode``."""
    with torch.no_grad(), WatchEverything():
        model(images)


def probed(model: nn.Module, images: Any) -> None:
    probe(model, images)


def discovered(model: nn.Module, images: Any) -> None:
    """A first probe: every operation watched (``find_sites`` with an example always discovers)."""
    find_sites(model, example=images, rediscover=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds per case (medians reported)")
    parser.add_argument(
        "--in-a-row", type=int, default=3, help="counted runs of each variant per round (1: alternate every run)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dashboard uses 1)")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="run with fmw.memory.keep_freed_memory() (see the module's docstring)",
    )
    parser.add_argument(
        "--cases", nargs="+", metavar="NAME", help=f"measure only these cases (default: all of {', '.join(cases())})"
    )
    parser.add_argument("--batches", nargs="+", type=int, metavar="N", help="measure only these batch sizes")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1 or arguments.in_a_row < 1 or arguments.threads < 1:
        parser.error("--repeats, --in-a-row and --threads must be positive")
    unknown = sorted(set(arguments.cases or ()) - set(cases()))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; the cases are: {', '.join(cases())}")
    if arguments.batches and any(batch not in TARGETS for batch in arguments.batches):
        parser.error(f"--batches takes {' and '.join(map(str, TARGETS))}, the sizes with a target")
    allocator = "default allocator"
    if arguments.keep_freed_memory:
        allocator = "freed memory kept" if keep_freed_memory() else "default allocator (keep_freed_memory: not glibc)"
    torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, {arguments.threads} thread(s), "
        f"{allocator}, median of {arguments.repeats} rounds x {arguments.in_a_row} in a row; "
        f"targets probe/plain <= {TARGETS[1]}x at batch 1, <= {TARGETS[32]}x at 32"
    )
    print(
        f"{'model':>20} {'batch':>5} {'px':>4} {'sites':>5} {'records':>8} | {'plain':>10} {'probe':>10} {'ratio':>6} "
        f"| {'again':>6} {'watch all':>9} {'discovery':>9} | faults plain / probe"
    )
    misses = []
    for name, case in cases().items():
        if arguments.cases and name not in arguments.cases:
            continue
        torch.manual_seed(0)
        model, size = case.build().eval(), case.size
        for batch in case.batches:
            if arguments.batches and batch not in arguments.batches:
                continue
            batch_of = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch + size))
            images: Any = list(batch_of.sigmoid()) if case.image_list else batch_of
            records = probe(model, images).sites
            held = sum(tensor.numel() * tensor.element_size() for r in records for tensor in (r.before, r.after))
            sites = len(records)
            del records  # not kept alive while timing
            timings = medians_in_rounds(
                {
                    "plain": partial(plain, model, images),
                    "plain again": partial(plain, model, images),
                    "probe": partial(probed, model, images),
                    "watch all": partial(watched, model, images),
                    "discovery": partial(discovered, model, images),
                },
                arguments.repeats,
                warmup=1,
                in_a_row=arguments.in_a_row,
            )
            base = timings["plain"].seconds
            ratio = timings["probe"].seconds / base
            if ratio > TARGETS[batch]:
                misses.append(f"{name} at batch {batch}")
            again, everything, discovery = (
                timings[key].seconds / base for key in ("plain again", "watch all", "discovery")
            )
            faults = " / ".join(str(timings[key].page_faults) for key in ("plain", "probe"))
            print(
                f"{name:>20} {batch:>5} {size:>4} {sites:>5} {held / 1e6:>5.1f} MB | "
                f"{base * 1e3:>7.1f} ms {timings['probe'].seconds * 1e3:>7.1f} ms {ratio:>5.2f}x | "
                f"{again:>5.2f}x {everything:>8.2f}x {discovery:>8.2f}x | {faults}"
            )
    print("every case meets its target" if not misses else f"over the target: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
