"""Where one training step of an fmw network spends its time: the share of oneDNN convolutions
(forward and backward) and the forward convolutions' multiply-adds per second, from torch.profiler;
then the ratio of step times once the whitening bias has stopped training (``fmw train`` takes it
out of autograd after its epochs) to step times while it trains, interleaved in one process;
with ``--against-widths``, also the images/s of a network of other block widths relative to the
shipped widths (both with the whitening bias frozen, interleaved): what width costs in epochs.

    python -m bench.train_step_profile [--weighting none] [--batch-size 1024] [--optimizer sgd] [--rounds 5]
                                       [--against-widths 64 256 256]

One step of ``fmw train``'s own loop (bf16 autocast, channels-last) on random images, after two
warm-up steps; run it on a quiet machine. The multiply-adds are the network's forward count
(``count_multiply_adds``) less the linear classifier's, times the batch.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from bench.timing import interleaved_medians
from bench.train_throughput import synthetic_split
from fmw.models import FMWNet, NetConfig, build_model, count_multiply_adds
from fmw.training import Recipe
from fmw.training.optim import TrainingOptimizer
from fmw.training.trainer import OPTIMIZERS, build_optimizer, train_one_epoch

FORWARD_CONVOLUTION = "aten::mkldnn_convolution"
BACKWARD_CONVOLUTION = "aten::convolution_backward"


def convolution_multiply_adds(model: FMWNet) -> int:
    """Forward multiply-adds of one image in the network's convolutions: all of them but the
    linear classifier's."""
    return count_multiply_adds(model) - model.classifier.in_features * model.classifier.out_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weighting", default="none")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="sgd")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per state for the whitening ratio")
    parser.add_argument(
        "--against-widths",
        type=int,
        nargs="+",
        default=None,
        help="block widths of a network to time against the shipped one (e.g. airbench94's 64 256 256)",
    )
    args = parser.parse_args()
    recipe = Recipe(weighting=args.weighting, batch_size=args.batch_size, optimizer=args.optimizer)
    torch.manual_seed(0)
    model = build_model(NetConfig(weighting=args.weighting)).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    warm = synthetic_split(2 * args.batch_size)
    train_one_epoch(model, optimizer, warm, recipe, mean, std, generator, device, 0, 10, progress=False)
    one_step = synthetic_split(args.batch_size)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        train_one_epoch(model, optimizer, one_step, recipe, mean, std, generator, device, 2, 10, progress=False)
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    forward = sum(event.self_cpu_time_total for event in events if event.key == FORWARD_CONVOLUTION)
    backward = sum(event.self_cpu_time_total for event in events if event.key == BACKWARD_CONVOLUTION)
    rate = convolution_multiply_adds(model) * args.batch_size / (forward / 1e6)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, cpu")
    print(f"weighting {args.weighting}, batch {args.batch_size}, optimizer {args.optimizer}, bf16 autocast")
    print(f"step (profiled, self CPU time): {total / 1e3:8.1f} ms")
    print(f"convolutions, forward:          {forward / 1e3:8.1f} ms  ({forward / total:.1%})")
    print(f"convolutions, backward:         {backward / 1e3:8.1f} ms  ({backward / total:.1%})")
    print(f"convolutions in all:            {(forward + backward) / total:.1%} of the step")
    print(f"forward convolutions:           {rate / 1e9:8.1f} G multiply-adds/s")

    def step(net: FMWNet, opt: TrainingOptimizer, bias_trains: bool) -> Callable[[], None]:
        def run() -> None:
            net.whitening.bias.requires_grad_(bias_trains)
            train_one_epoch(net, opt, one_step, recipe, mean, std, generator, device, 2, 10, progress=False)

        return run

    medians = interleaved_medians(
        {"training": step(model, optimizer, True), "frozen": step(model, optimizer, False)}, args.rounds
    )
    training, frozen = medians["training"], medians["frozen"]
    print(f"step, whitening bias training:  {training * 1e3:8.1f} ms (median of {args.rounds})")
    print(f"step, whitening bias frozen:    {frozen * 1e3:8.1f} ms")
    print(f"ratio frozen / training:        {frozen / training:.3f}")
    if not args.against_widths:
        return
    # the shipped network against one with other widths, both with the whitening bias frozen
    other = build_model(NetConfig(weighting=args.weighting, widths=tuple(args.against_widths))).to(
        memory_format=torch.channels_last
    )
    other_optimizer = build_optimizer(other, recipe)
    step(other, other_optimizer, False)()  # warm-up
    medians = interleaved_medians(
        {"shipped": step(model, optimizer, False), "other": step(other, other_optimizer, False)}, args.rounds
    )
    shipped, against = medians["shipped"], medians["other"]
    widths = " ".join(map(str, args.against_widths))
    print(
        f"widths {' '.join(map(str, model.config.widths))}: {count_multiply_adds(model) / 1e6:6.1f} M multiply-adds, "
        f"{args.batch_size / shipped:7.1f} images/s (median of {args.rounds} steps)"
    )
    print(
        f"widths {widths}: {count_multiply_adds(other) / 1e6:6.1f} M multiply-adds, "
        f"{args.batch_size / against:7.1f} images/s"
    )
    print(f"images/s ratio (widths {widths} / shipped): {shipped / against:.3f}")


if __name__ == "__main__":
    main()
