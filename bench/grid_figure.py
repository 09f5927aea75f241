"""Benchmark: fmw.figures.sites' one-trace montage grid against the obvious make_subplots figure with one
heatmap per channel, for 64, 256 and 512 maps: build time, serialise time and JSON bytes, as ratios.

Run: python -m bench.grid_figure [--size 28] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import plotly
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from fmw.figures import feature_grid_figure
from fmw.figures.style import symmetric_limit

CHANNEL_COUNTS = (64, 256, 512)


def subplot_grid_figure(maps: np.ndarray) -> go.Figure:
    """The obvious figure: one subplot and one heatmap trace per channel, on one colour axis."""
    count = maps.shape[0]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = make_subplots(rows=rows, cols=columns, horizontal_spacing=0.002, vertical_spacing=0.002)
    for channel in range(count):
        figure.add_trace(
            go.Heatmap(z=maps[channel], coloraxis="coloraxis", name=f"channel {channel}"),
            row=channel // columns + 1,
            col=channel % columns + 1,
        )
    limit = symmetric_limit(maps)
    figure.update_layout(coloraxis={"colorscale": "RdBu_r", "cmin": -limit, "cmax": limit})
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, autorange="reversed")
    return figure


def measure(build: Callable[[np.ndarray], go.Figure], maps: np.ndarray, repeats: int) -> tuple[float, float, int]:
    """Median build seconds, median serialise seconds (as streamlit sends it), JSON bytes."""
    build_times, serialise_times, size = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        figure = build(maps)
        built = time.perf_counter()
        payload = pio.to_json(figure, validate=False)
        build_times.append(built - start)
        serialise_times.append(time.perf_counter() - built)
        size = len(payload.encode())
    return statistics.median(build_times), statistics.median(serialise_times), size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28, help="height and width of each feature map (default 28)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    arguments = parser.parse_args(argv)
    print(
        f"plotly {plotly.__version__}, python {platform.python_version()}, {platform.machine()}, "
        f"maps of {arguments.size}x{arguments.size}, median of {arguments.repeats}"
    )
    print(
        f"{'maps':>5} | {'montage build':>13} {'subplots build':>14} {'ratio':>7} | "
        f"{'build+json ratio':>16} | {'montage bytes':>13} {'subplots bytes':>14} {'bytes ratio':>11}"
    )
    rng = np.random.default_rng(0)
    measure(feature_grid_figure, rng.normal(size=(4, 8, 8)).astype(np.float32), 1)  # warm plotly's validators
    for count in CHANNEL_COUNTS:
        maps = rng.normal(size=(count, arguments.size, arguments.size)).astype(np.float32)
        ours = measure(feature_grid_figure, maps, arguments.repeats)
        obvious = measure(subplot_grid_figure, maps, arguments.repeats)
        print(
            f"{count:>5} | {ours[0] * 1e3:>10.1f} ms {obvious[0] * 1e3:>11.1f} ms {obvious[0] / ours[0]:>6.0f}x | "
            f"{(obvious[0] + obvious[1]) / (ours[0] + ours[1]):>15.0f}x | "
            f"{ours[2] / 1e6:>10.2f} MB {obvious[2] / 1e6:>11.2f} MB {ours[2] / obvious[2]:>10.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
