"""Options several commands share, declared once: the dataset, its split and the device."""

from __future__ import annotations

import argparse


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--split`` and ``--device`` as ``fmw evaluate`` and ``fmw stats`` take them."""
    parser.add_argument(
        "--data",
        default=None,
        help="zip/dir in ImageFolder layout or torchvision:DIR (default: $FMW_DATA, else the shared CIFAR-10 zip)",
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps; or set FMW_DEVICE")
