"""The benchmarks' one timing helper: medians of several runs timed in interleaved rounds, so that
machine noise hits every run alike; optionally several runs of each in a row (``in_a_row``), each
counted with the page faults it took."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

try:
    import resource
except ImportError:  # Windows: no page-fault counts
    resource = None  # type: ignore[assignment]


def interleaved_medians(runs: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 0) -> dict[str, float]:
    """Median seconds of each of ``runs`` (name -> callable) over ``rounds`` rounds; every round runs
    each once, in order. The first ``warmup`` rounds are run but not counted."""
    return {name: timing.seconds for name, timing in medians_in_rounds(runs, rounds, warmup=warmup).items()}


@dataclass(frozen=True)
class Timing:
    seconds: float  # median over the counted runs
    page_faults: int | None  # median minor page faults per counted run (None where not measurable)


def _minor_faults() -> int | None:
    return None if resource is None else int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def medians_in_rounds(
    runs: Mapping[str, Callable[[], object]], rounds: int, *, warmup: int = 0, in_a_row: int = 1
) -> dict[str, Timing]:
    """Medians of each of ``runs`` over ``rounds`` rounds. Every round runs each ``in_a_row`` times
    in a row and counts those; with more than one, one uncounted run goes first, so that every counted
    run follows a run of its own (as in a loop of it) and not whatever state another left behind (the
    C allocator's heap, above all). The first ``warmup`` rounds are run but not counted."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[int]] = {name: [] for name in runs}
    settle = int(in_a_row > 1)  # runs before the counted ones of a row
    for round_index in range(warmup + rounds):
        for name, run in runs.items():
            for position in range(settle + in_a_row):
                before_faults, start = _minor_faults(), time.perf_counter()
                run()
                elapsed, after_faults = time.perf_counter() - start, _minor_faults()
                if round_index >= warmup and position >= settle:
                    seconds[name].append(elapsed)
                    if before_faults is not None and after_faults is not None:
                        faults[name].append(after_faults - before_faults)
    return {
        name: Timing(statistics.median(seconds[name]), int(statistics.median(faults[name])) if faults[name] else None)
        for name in runs
    }
