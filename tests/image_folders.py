"""Image folders for the streaming tests and the stats benchmark: ImageFolder layouts of generated
images (mixed sizes and formats, optionally damaged files), and a child process that reports the
peak resident memory of gate statistics over one (``python -m tests.image_folders DIR MODEL``)."""

from __future__ import annotations

import argparse
import json
import resource
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tests.bounds import memory_bytes

FORMATS = ("jpg", "png", "webp", "bmp")


def write_image_folder(
    root: Path,
    classes: Sequence[str],
    per_class: int,
    *,
    sizes: tuple[int, int] = (24, 96),
    formats: Sequence[str] = FORMATS,
    corrupt: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """``root/<class>/<index>.<format>``: images of random height and width in ``sizes`` (RGB,
    grey and RGBA modes mixed), class k brighter in colour channel k % 3 and striped with a
    period that depends on k, so gates can tell classes apart; ``corrupt``: relative names of
    files to write with damaged bytes (a JPEG header, then garbage)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            height, width = (int(side) for side in rng.integers(sizes[0], sizes[1] + 1, 2))
            pixels = rng.integers(0, 120, (height, width, 3)).astype(np.uint8)
            pixels[..., label % 3] += 100
            pixels[:, :: 2 + label % 5] = 255
            image = Image.fromarray(pixels)
            mode = ("RGB", "L", "RGBA")[index % 3]
            image = image.convert(mode) if mode != "RGB" else image
            extension = formats[index % len(formats)]
            if extension == "jpg" and mode == "RGBA":
                image = image.convert("RGB")
            image.save(folder / f"{index:05d}.{extension}")
    for relative in corrupt:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(200))
    return root


def main(argv: list[str] | None = None) -> None:
    """Gate statistics of MODEL (an fmw checkpoint, or torchvision:NAME with random weights) over
    DIR, then one JSON line: images read, this process's peak resident bytes (VmHWM) and the
    largest peak of its worker processes."""
    from fmw.analysis import class_names_of
    from fmw.analysis.labels import match_labels
    from fmw.analysis.streaming import ReadOptions, folder_gate_statistics, open_images
    from fmw.io.model_spec import ModelOptions, load_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data")
    parser.add_argument("model")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=None)
    args = parser.parse_args(argv)
    loaded = load_model(args.model, ModelOptions(random_weights=True, input_size=args.input_size))
    images = open_images(args.data)
    labels = match_labels(images.class_names, class_names_of(loaded))
    _, report = folder_gate_statistics(loaded, images, labels, ReadOptions(args.batch_size, args.workers))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    print(json.dumps({"images": report.images, "peak_bytes": memory_bytes("VmHWM"), "worker_peak_bytes": workers}))


if __name__ == "__main__":
    main()
