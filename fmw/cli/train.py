"""``fmw train``: parse the recipe's options and train a network of the fmw family."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fmw.errors import FMWError
from fmw.io import load_split
from fmw.layers import WEIGHTING_LAYERS
from fmw.training.trainer import OPTIMIZERS, Recipe, train


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="fmw train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weighting", choices=list(WEIGHTING_LAYERS), default=defaults.weighting)
    parser.add_argument(
        "--data",
        default=None,
        help="zip/dir in ImageFolder layout, or torchvision:DIR (default: $FMW_DATA, else CIFAR-10, downloaded to "
        "~/.cache/fmw/cifar10 on first use)",
    )
    parser.add_argument("--download", action="store_true", help="with --data torchvision:DIR, download CIFAR-10 there")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--widths", type=int, nargs="+", default=list(defaults.widths))
    parser.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        default=defaults.optimizer,
        help="sgd: Nesterov SGD for every parameter; muon: Muon for the blocks' 3x3 filters, SGD for the rest",
    )
    parser.add_argument(
        "--muon-lr", type=float, default=defaults.muon_lr, help="peak Muon rate (with --optimizer muon)"
    )
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast is the default)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps; or set FMW_DEVICE")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N images per class (quick runs)")
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        metavar="Q",
        help="re-encode every train and test image as JPEG at quality Q (1-95) first: what more "
        "compression costs (the split's source in the checkpoint says so)",
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path to write (.safetensors)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or args.muon_lr <= 0:
        parser.error("--epochs and --batch-size must be positive integers and --lr and --muon-lr positive")
    if args.out.suffix != ".safetensors":
        parser.error(f"--out must end in .safetensors, got {args.out}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe(
        weighting=args.weighting,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        bf16=not args.no_bf16,
        widths=tuple(args.widths),
        optimizer=args.optimizer,
        muon_lr=args.muon_lr,
    )
    try:
        train_split = load_split(args.data, "train", download=args.download)
        if args.subset:
            train_split = train_split.subset(args.subset)
        test_split = load_split(args.data, "test", download=args.download)
        if args.jpeg_quality is not None:
            train_split, test_split = (split.jpeg_reencoded(args.jpeg_quality) for split in (train_split, test_split))
        _, metadata = train(
            recipe, args.data, args.out, args.device, not args.quiet, train_split=train_split, test_split=test_split
        )
        if dist.is_initialized():
            # Free the DistributedDataParallel wrapper (reference cycles: only the cycle collector frees
            # it) while the process group is alive, then wait for every rank, before destroying the
            # group. Rank 0 aborted now and then at exit ("terminate called without an active
            # exception"); Gloo work outliving its group at interpreter shutdown is the suspected cause
            # (cf. pytorch PR 179291), not a proven one.
            gc.collect()
            dist.barrier()
    except (FMWError, ValueError) as error:
        print(f"fmw train: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: v for k, v in metadata.metrics.items() if k != "history"}
        print(json.dumps(summary, indent=2))
    return 0
