"""Images/s of ``fmw stats`` over an image folder against a plain inference loop over the same
DataLoader, and the peak resident memory of statistics over 300 against 3,000 images.

    python -m bench.stats_throughput [--model torchvision:mobilenet_v3_small] [--images 400] [--rounds 6]
        [--keep-freed-memory]

The folder is generated once: JPEGs of mixed sizes (``--sizes``, default 160 to 640 px a side) in 10
class folders. Both loops read it through ``fmw.analysis.streaming.ImageReader`` (the DataLoader,
its workers and the model's own preprocessing); the plain loop only runs ``model(x)`` under
``no_grad``, the statistics loop is ``folder_gate_statistics`` (probe, accumulators, the final
reduction). After one warm-up of each, every round runs one of each, in alternating order, so
machine noise hits both alike; the median of the rounds' ratios is the figure, the target at least
0.9. Memory: each count in a fresh process (``python -m tests.image_folders``), the peak resident
memory of the main process and of its largest worker; the target growth is at most 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import torch

from bench.timing import interleaved_medians
from fmw.analysis import class_names_of
from fmw.analysis.labels import match_labels
from fmw.analysis.streaming import (
    ImageReader,
    ReadOptions,
    default_workers,
    folder_gate_statistics,
    open_images,
)
from fmw.device import model_device
from fmw.io.model_spec import ModelOptions, load_model
from fmw.memory import keep_freed_memory
from tests.conftest import REPO
from tests.image_folders import write_image_folder

CLASSES = [f"class{index:02d}" for index in range(10)]


def peak_memory(folder: Path, model: str, workers: int, batch_size: int) -> dict[str, int]:
    command = [sys.executable, "-m", "tests.image_folders", str(folder), model]
    command += ["--workers", str(workers), "--batch-size", str(batch_size)]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment, cwd=REPO)
    measured: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="torchvision:mobilenet_v3_small", help="a model SPEC (random weights)")
    parser.add_argument("--images", type=int, default=400, help="images in the throughput folder")
    parser.add_argument("--sizes", type=int, nargs=2, default=(160, 640), help="smallest and largest side, px")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: fmw's)")
    parser.add_argument("--memory", type=int, nargs="*", default=[300, 3000], help="image counts for peak memory")
    parser.add_argument("--directory", type=Path, default=None, help="keep the generated folders here")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="time both loops with fmw.memory.keep_freed_memory(), as `fmw stats` runs (not the memory counts)",
    )
    args = parser.parse_args()
    kept = args.keep_freed_memory and keep_freed_memory()

    workers = default_workers() if args.workers is None else args.workers
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpu, torch {torch.__version__}"
    )
    allocator = "freed memory kept" if kept else "default allocator"
    print(f"torch threads {torch.get_num_threads()}, {workers} decoding workers, batch {args.batch_size}, {allocator}")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.directory or Path(scratch)
        folder = base / f"mixed-{args.images}"
        if not folder.exists():
            write_image_folder(folder, CLASSES, args.images // len(CLASSES), sizes=tuple(args.sizes), formats=("jpg",))
        loaded = load_model(args.model, ModelOptions(random_weights=True))
        images = open_images(str(folder))
        labels = match_labels(images.class_names, class_names_of(loaded))
        options = ReadOptions(batch_size=args.batch_size, workers=workers)
        preprocessing, device = loaded.preprocessing, model_device(loaded.model)

        def plain() -> None:
            with torch.no_grad():
                for inputs, _ in ImageReader(images, preprocessing, options, device).batches():
                    loaded.model(inputs)

        def statistics() -> None:
            folder_gate_statistics(loaded, images, labels, options)

        loops = {"plain": plain, "stats": statistics}
        ratios: list[float] = []
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for round_index in range(args.rounds):  # one of each per round, in alternating order
            order = list(loops) if round_index % 2 == 0 else list(reversed(loops))
            seconds = interleaved_medians({name: loops[name] for name in order}, 1, warmup=int(round_index == 0))
            for name, value in seconds.items():
                rates[name].append(len(images) / value)
            ratios.append(rates["stats"][-1] / rates["plain"][-1])
        print(f"{args.model} on {len(images)} JPEGs of {args.sizes[0]}-{args.sizes[1]} px, {args.rounds} rounds")
        print(f"plain loop {median(rates['plain']):.1f} images/s, stats {median(rates['stats']):.1f} images/s")
        each = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        print(f"ratio stats / plain: {median(ratios):.3f} (median of rounds {each}; target >= 0.9)")

        peaks = {}
        for count in args.memory:
            memory_folder = base / f"memory-{count}"
            if not memory_folder.exists():
                write_image_folder(memory_folder, CLASSES, count // len(CLASSES), sizes=(64, 256), formats=("jpg",))
            peaks[count] = peak_memory(memory_folder, args.model, workers, args.batch_size)
            main_mb, worker_mb = peaks[count]["peak_bytes"] / 2**20, peaks[count]["worker_peak_bytes"] / 2**20
            print(f"{count:>6} images: peak resident {main_mb:.0f} MB (main), {worker_mb:.0f} MB (largest worker)")
        if len(peaks) >= 2:
            first, last = min(peaks), max(peaks)
            for key, name in (("peak_bytes", "main"), ("worker_peak_bytes", "worker")):
                growth = peaks[last][key] / peaks[first][key] - 1
                print(f"peak growth {first} -> {last} images ({name}): {100 * growth:+.1f}% (target <= 10%)")


if __name__ == "__main__":
    main()
