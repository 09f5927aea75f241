"""Images/s of ``fmw train``'s training loop against a plain PyTorch loop over the same network,
data and settings, measured in one process; prints the ratio (target: at least 0.95).

    python -m bench.train_throughput [--weighting channel] [--steps 30] [--batch-size 512] [--optimizer muon]

The plain loop is what a user would write by hand: a pre-augmented, pre-normalised float tensor
in memory (so it pays nothing for data), cross-entropy, the same optimizer and bf16 autocast.
Both loops run interleaved in rounds so that machine noise hits both alike. With
``--against-optimizer sgd --optimizer muon`` both loops are fmw's and only the optimizer differs:
the ratio is then the cost of Muon's steps.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from fmw.io import ImageSplit, load_split, normalize
from fmw.models import FMWNet, NetConfig, build_model
from fmw.training import Recipe
from fmw.training.optim import TrainingOptimizer
from fmw.training.trainer import autocast_for, build_optimizer, train_one_epoch


def synthetic_split(count: int, classes: int = 10) -> ImageSplit:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, classes, (count,), generator=generator)
    return ImageSplit(images, labels, [str(c) for c in range(classes)], "synthetic")


def plain_loop(
    model: nn.Module,
    optimizer: TrainingOptimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    recipe: Recipe,
) -> None:
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for start in range(0, len(images) - batch_size + 1, batch_size):
        x = images[start : start + batch_size]
        with autocast_for(torch.device("cpu"), recipe.bf16):
            loss = criterion(model(x).float(), labels[start : start + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weighting", default="channel")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--cifar", action="store_true", help="use the shared CIFAR-10 zip instead of synthetic images")
    parser.add_argument("--optimizer", choices=["sgd", "muon"], default="sgd")
    parser.add_argument(
        "--against-optimizer",
        choices=["sgd", "muon"],
        default=None,
        help="baseline: fmw's own loop with this optimizer instead of the plain loop",
    )
    args = parser.parse_args()
    count = args.steps * args.batch_size
    split = load_split(None, "train").subset(count // 10) if args.cifar else synthetic_split(count)
    recipe = Recipe(weighting=args.weighting, batch_size=args.batch_size, optimizer=args.optimizer)
    baseline_recipe = Recipe(
        weighting=args.weighting, batch_size=args.batch_size, optimizer=args.against_optimizer or args.optimizer
    )
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    device = torch.device("cpu")
    prepared = normalize(split.images, mean, std).contiguous(memory_format=torch.channels_last)

    def fresh(recipe: Recipe) -> tuple[FMWNet, TrainingOptimizer]:
        torch.manual_seed(0)
        model = build_model(NetConfig(weighting=args.weighting)).to(memory_format=torch.channels_last)
        return model, build_optimizer(model, recipe)

    ours_model, ours_optimizer = fresh(recipe)
    plain_model, plain_optimizer = fresh(baseline_recipe)
    generator = torch.Generator().manual_seed(0)
    total = args.steps * (args.rounds + 1)
    ours, plain = [], []
    for round_index in range(args.rounds + 1):  # round 0 warms both up and is not counted
        start = time.perf_counter()
        train_one_epoch(
            ours_model, ours_optimizer, split, recipe, mean, std, generator, device, 0, total, progress=False
        )
        middle = time.perf_counter()
        if args.against_optimizer:
            train_one_epoch(
                plain_model,
                plain_optimizer,
                split,
                baseline_recipe,
                mean,
                std,
                generator,
                device,
                0,
                total,
                progress=False,
            )
        else:
            plain_loop(plain_model, plain_optimizer, prepared, split.labels, args.batch_size, recipe)
        end = time.perf_counter()
        if round_index:
            ours.append(count / (middle - start))
            plain.append(count / (end - middle))
    ours_rate, plain_rate = sorted(ours)[len(ours) // 2], sorted(plain)[len(plain) // 2]
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, cpu")
    print(f"weighting {args.weighting}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds (median)")
    if args.against_optimizer:
        print(f"fmw train loop, {args.optimizer}: {ours_rate:8.1f} images/s")
        print(f"fmw train loop, {args.against_optimizer}: {plain_rate:8.1f} images/s")
        print(f"ratio {args.optimizer} / {args.against_optimizer}: {ours_rate / plain_rate:.3f}")
        return
    print(f"fmw train loop (augment + normalise per batch, {args.optimizer}): {ours_rate:8.1f} images/s")
    print(f"plain loop (pre-normalised tensor, no augment, {args.optimizer}): {plain_rate:8.1f} images/s")
    print(f"ratio fmw / plain: {ours_rate / plain_rate:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
