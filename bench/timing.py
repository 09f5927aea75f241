"""The benchmarks' one timing helper: medians of several runs timed in interleaved rounds, so that
machine noise hits every run alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def interleaved_medians(runs: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 0) -> dict[str, float]:
    """Median seconds of each of ``runs`` (name -> callable) over ``rounds`` rounds; every round runs
    each once, in order. The first ``warmup`` rounds are run but not counted."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(warmup + rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_index >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}
