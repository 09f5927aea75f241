"""Benchmark: what a full garbage collection costs the dashboard's server, with and without the start-up's
freeze. In this process: the dashboard's own warm-up (``dashboard.app.warm_up``: every checkpoint in
``FMW_CHECKPOINT_DIR`` loaded and analysed on the sample photo, one Compare figure built), then
``dashboard.app.freeze_what_is_loaded``, then what one session's Compare keeps (every site's column of
every model, as canvas payloads). ``gc.collect(2)`` is timed with the warm-up frozen (what a full
collection that Python starts by itself scans now) and, the same objects held, after ``gc.unfreeze``
(what Streamlit's collection after every script run scanned: ``runner.postScriptGC``, which
``dashboard/streamlit.toml`` turns off). A server that has served many pages holds more than one
session's figures.

Run: python -m bench.server_gc [--rounds 5]"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time


def collection_seconds(rounds: int) -> list[float]:
    """Seconds of ``rounds`` full collections in a row."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        gc.collect(2)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="full collections timed each way (median)")
    arguments = parser.parse_args(argv)
    from dashboard import app
    from dashboard.figure_canvas import canvas_payload
    from dashboard.services import preload_files
    from fmw.analysis.changes import site_change
    from fmw.device import select_device
    from fmw.figures.compare import site_change_spec

    app.warm_up()
    app.freeze_what_is_loaded()
    frozen = gc.get_freeze_count()
    analyses = [analysis for analysis in preload_files(str(select_device("auto"))) if analysis.sites]
    session = [
        canvas_payload(site_change_spec(site_change(site), analysis.crop))
        for analysis in analyses
        for site in analysis.sites
    ]
    scanned = len(gc.get_objects())
    frozen_times = collection_seconds(arguments.rounds)
    gc.unfreeze()
    everything = len(gc.get_objects())
    unfrozen_times = collection_seconds(arguments.rounds)
    frozen_ms, unfrozen_ms = (statistics.median(times) * 1000 for times in (frozen_times, unfrozen_times))
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"{len(analyses)} models, one session's {len(session)} Compare columns held; full collection, median of "
        f"{arguments.rounds}:"
    )
    print(f"  warm-up frozen ({frozen:,} objects): {scanned:,} objects scanned, {frozen_ms:.1f} ms")
    print(f"  nothing frozen: {everything:,} objects scanned, {unfrozen_ms:.1f} ms ({unfrozen_ms / frozen_ms:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
