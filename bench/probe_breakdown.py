"""Benchmark: where a steady-state probe's extra time goes, at batch 1, against a plain pass in the
same process. Variants, each adding one part:

- "watch all": a bare ``TorchFunctionMode`` over the whole pass that sees every operation and does
  nothing else (the floor of any tool that watches everything);
- "machinery": the forward wrappers a steady-state probe puts on the model (the mode entered in
  each module that made products, taken off for their children), with no observation;
- "observed": the same with the probe's observation recording every product (its bookkeeping done
  after the pass), but not the rest of ``probe``;
- "probe": ``fmw.probe`` itself (its setup, grouping the products into sites, building the records).

Run: python -m bench.probe_breakdown [--rounds 40] [--cases NAME ...]
Times are the median thread CPU time of a pass (``time.thread_time``: another process on the machine
does not count), each variant three times in a row per round.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

from bench.probe_overhead import WatchEverything
from fmw.memory import keep_freed_memory
from fmw.models import build_model
from fmw.sites import probe
from fmw.sites.index import model_index
from fmw.sites.mode import _Within, observing
from fmw.sites.observer import Observation
from fmw.sites.recording import Keeper

CASES: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "fmw cbam": lambda: (build_model(weighting="cbam").eval(), torch.randn(1, 3, 32, 32)),
    "fmw channel": lambda: (build_model(weighting="channel").eval(), torch.randn(1, 3, 32, 32)),
    "mobilenet_v3_small": lambda: (mobilenet_v3_small(weights=None).eval(), torch.randn(1, 3, 224, 224)),
}


def variants(model: nn.Module, images: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The variants above for ``model``, already probed once (its sites known)."""
    probe(model, images)
    index = model_index(model)
    assert index.sites is not None
    makers = [index.module(name) for name in dict.fromkeys(s.maker for site in index.sites for s in site.stages)]

    def plain() -> None:
        with torch.no_grad():
            model(images)

    def watch_all() -> None:
        with torch.no_grad(), WatchEverything():
            model(images)

    def machinery() -> None:
        within = _Within(makers, index)
        try:
            plain()
        finally:
            within.remove()

    def observed() -> None:
        observation = Observation(model, record=Keeper(False), known_index=index)
        with observing(observation, within=makers), torch.no_grad():
            observation.start_pass()
            model(images)

    def probed() -> None:
        probe(model, images)

    return {"plain": plain, "watch all": watch_all, "machinery": machinery, "observed": observed, "probe": probed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds (medians reported)")
    parser.add_argument("--cases", nargs="+", metavar="NAME", help=f"of {', '.join(CASES)} (default: all)")
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds must be positive")
    unknown = sorted(set(arguments.cases or ()) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; the cases are: {', '.join(CASES)}")
    keep_freed_memory()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, 1 thread, batch 1")
    for name, build in CASES.items():
        if arguments.cases and name not in arguments.cases:
            continue
        torch.manual_seed(0)
        model, images = build()
        runs = variants(model, images)
        seconds: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(arguments.rounds):
            for key, run in runs.items():
                run()
                for _ in range(3):
                    start = time.thread_time()
                    run()
                    seconds[key].append(time.thread_time() - start)
        medians = {key: statistics.median(values) for key, values in seconds.items()}
        base = medians["plain"]
        cells = ", ".join(
            f"{key} {value * 1e3:.2f} ms (+{(value - base) * 1e6:.0f} us, {value / base:.2f}x)"
            for key, value in medians.items()
        )
        print(f"{name}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
