"""``python -m fmw train``: train one network of the fmw family and write a checkpoint with the
recipe and measured metrics inside; runs unchanged under ``torchrun`` (DistributedDataParallel).

Recipe (published facts of airbench93, Jordan 2024, arXiv:2404.00498; own code): a patch-whitening
first layer fitted to the training images (its bias trains for the first 3 epochs only), frozen
BatchNorm weights with a 64x learning rate on BatchNorm biases, Dirac-initialised convolutions,
batch 1024, Nesterov SGD (momentum 0.85) with a triangular learning rate, label smoothing 0.2,
flip (alternating by epoch) plus 2-pixel translate, and lookahead weight averaging from epoch 4.
bf16 autocast where the hardware has it, channels-last. Optionally (``--optimizer muon``) the
blocks' 3x3 filters are trained by Muon (``fmw.optim``) instead of SGD.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from fmw.checkpoint import CheckpointMetadata, save_checkpoint
from fmw.data import DataError, ImageSplit, augment_batch, batches, load_split, normalize
from fmw.device import select_device
from fmw.models import FMWNet, NetConfig, PatchWhitening, WeightedBlock, build_model, count_multiply_adds, count_parameters
from fmw.optim import Muon, OptimizerGroup
from fmw.weighting import WEIGHTING_LAYERS

__all__ = ["Recipe", "Lookahead", "train", "train_one_epoch", "predict", "view_logits", "VIEWS", "build_optimizer", "backbone_filters", "main", "dataset_statistics"]


@dataclass
class Recipe:
    """Training hyperparameters. ``learning_rate`` is the peak rate for the mean loss over a
    batch; ``weight_decay`` is PyTorch's coefficient for the convolution and linear weights (the
    BatchNorm biases get ``bias_lr_scale`` times the rate and the same absolute decay). airbench93's
    decoupled values (lr 11.5 and decay 0.0153 per 1024 examples, momentum 0.85) convert to
    1.5 and 0.00133 at batch 1024."""

    weighting: str = "none"
    epochs: int = 12  # airbench93 uses 11; at 12 the slowest variant (cbam) took 12.3 min on 2 CPU cores
    batch_size: int = 1024
    learning_rate: float = 1.5
    momentum: float = 0.85
    weight_decay: float = 0.00133
    bias_lr_scale: float = 64.0
    label_smoothing: float = 0.2
    schedule: tuple[float, float, float] = (0.2, 0.23, 0.07)  # start, peak position, end (x peak rate)
    whiten_bias_epochs: int = 3
    lookahead_from_epoch: int = 3  # 0-based: averaging starts in the 4th epoch
    lookahead_every: int = 5
    translate: int = 2
    seed: int = 0
    bf16: bool = True
    optimizer: str = "sgd"  # "sgd", or "muon": Muon for the blocks' 3x3 convolutions, SGD for the rest
    muon_lr: float = 0.24  # peak rate of the Muon updates (each of spectral size about 1 per filter bank)
    muon_momentum: float = 0.6
    widths: tuple[int, ...] = NetConfig.widths
    stem_width: int = NetConfig.stem_width


def dataset_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in 0..1 units, rounded to 4 decimals."""
    values = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(round(v, 4) for v in values.mean(1).tolist()), tuple(round(v, 4) for v in values.std(1).tolist())


WHITENING_IMAGES = 5000


def whitening_sample(count: int, seed: int, size: int = WHITENING_IMAGES) -> torch.Tensor:
    """Indices of the training images the whitening filters are fitted to: a random sample of
    ``size`` (seeded, the same on every rank). Not the first ``size``: a split loaded from an
    ImageFolder layout is sorted by class, so those would all be one class (airplanes in CIFAR-10)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size]


OPTIMIZERS = ("sgd", "muon")


def backbone_filters(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the blocks' 3x3 convolutions (not the whitening filters, not the weighting
    layers' own parameters): what ``Recipe.optimizer == "muon"`` hands to ``Muon``."""
    return [
        conv.weight
        for block in model.modules() if isinstance(block, WeightedBlock)
        for conv in (block.conv1, block.conv2) if conv.weight.requires_grad
    ]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer | OptimizerGroup:
    """Nesterov SGD in groups: BatchNorm biases (``bias_lr_scale`` x the rate, the same absolute
    decay), conv/linear weights and the whitening bias (decayed), and the weighting layers' own
    vectors and biases (not decayed: decay would pull a gate towards zero). With
    ``recipe.optimizer == "muon"`` the blocks' 3x3 filters go to ``Muon`` instead (peak rate
    ``muon_lr``, no decay) and both optimisers step together. Every group carries its
    ``peak_lr``; the schedule scales it."""
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
    filters = backbone_filters(model) if recipe.optimizer == "muon" else []
    to_muon = {id(parameter) for parameter in filters}
    norm_biases, whiten_biases, decayed, plain = [], [], [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in to_muon:
                continue
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                norm_biases.append(parameter)
            elif isinstance(module, PatchWhitening):
                whiten_biases.append(parameter)
            elif parameter.ndim > 1:
                decayed.append(parameter)
            else:
                plain.append(parameter)
    lr, scale = recipe.learning_rate, recipe.bias_lr_scale
    groups = [
        {"params": norm_biases, "lr": lr * scale, "weight_decay": recipe.weight_decay / scale, "peak_lr": lr * scale},
        # the whitening bias stops after ``whiten_bias_epochs``: a zero rate here, and ``train``
        # also takes it out of autograd then (re-wrapping the model under DistributedDataParallel)
        {"params": whiten_biases, "lr": lr, "weight_decay": recipe.weight_decay, "peak_lr": lr,
         "until_epoch": recipe.whiten_bias_epochs},
        {"params": decayed, "lr": lr, "weight_decay": recipe.weight_decay, "peak_lr": lr},
        {"params": plain, "lr": lr, "weight_decay": 0.0, "peak_lr": lr},
    ]
    sgd = torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=recipe.momentum, nesterov=True)
    if not filters:
        return sgd
    muon = Muon(filters, lr=recipe.muon_lr, momentum=recipe.muon_momentum)
    muon.param_groups[0]["peak_lr"] = recipe.muon_lr
    return OptimizerGroup(sgd, muon)


def triangular_rate(step: int, total: int, recipe: Recipe) -> float:
    """Peak-relative rate at ``step``: linear from ``start`` to 1 at ``peak`` x total, then to ``end``."""
    start, peak, end = recipe.schedule
    top = max(1, int(total * peak))
    if step < top:
        return start + (1 - start) * step / top
    return 1 + (end - 1) * min(1.0, (step - top) / max(1, total - top))


class Lookahead:
    """Weight averaging as airbench does it: from epoch ``from_epoch`` (0-based), every ``every``
    steps the running average moves towards the weights and the weights are set to the average,
    with a decay that grows over training (``0.95**every x (step / total)**3``); at the end of
    every epoch the model is set to the average, so training ends holding it."""

    def __init__(self, from_epoch: int, every: int) -> None:
        self.from_epoch, self.every = from_epoch, every
        self.average: dict[str, torch.Tensor] | None = None

    def after_step(self, model: nn.Module, epoch: int, step: int, total: int) -> None:
        if epoch < self.from_epoch or step % self.every:
            return
        if self.average is None:
            self.average = {key: value.detach().clone() for key, value in model.state_dict().items()}
        else:
            self.update(model, 0.95**self.every * (step / total) ** 3)

    def end_epoch(self, model: nn.Module) -> None:
        if self.average is not None:
            self.update(model, 1.0)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.average[key].lerp_(value, 1 - decay)
                value.copy_(self.average[key])


def autocast_for(device: torch.device, enabled: bool):
    usable = enabled and (device.type == "cuda" or (device.type == "cpu" and torch.backends.mkldnn.is_available()))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=usable)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | OptimizerGroup,
    split: ImageSplit,
    recipe: Recipe,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    generator: torch.Generator,
    device: torch.device,
    step: int,
    total_steps: int,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    epoch: int = 0,
    flip_base: torch.Tensor | None = None,
    lookahead: Lookahead | None = None,
) -> tuple[float, float, int]:
    """One epoch over ``split``; returns (mean loss, train accuracy, steps done so far).

    Every rank draws the same permutation and takes its own interleaved share of each batch.
    ``flip_base`` (one bool per image) gives alternating flips: image i is mirrored in even
    epochs when ``flip_base[i]`` and in odd epochs when not. ``lookahead``, when given, averages
    the weights (``Lookahead``).
    """
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    count = len(split)
    steps_per_epoch = count // recipe.batch_size
    bar = tqdm(total=steps_per_epoch, disable=not progress, leave=False, unit="batch", file=sys.stderr)
    for indices in batches(count, recipe.batch_size, generator, drop_last=True):
        indices = indices[rank::world]
        images = normalize(split.images[indices].to(device, non_blocking=True), mean, std)
        flip = None if flip_base is None else flip_base[indices] ^ bool(epoch % 2)
        images = augment_batch(images, generator, recipe.translate, flip).contiguous(memory_format=torch.channels_last)
        labels = split.labels[indices].to(device, non_blocking=True)
        factor = triangular_rate(step, total_steps, recipe)
        for group in optimizer.param_groups:
            stopped = epoch >= group.get("until_epoch", epoch + 1)
            group["lr"] = 0.0 if stopped else factor * group["peak_lr"]
        with autocast_for(device, recipe.bf16):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if lookahead is not None:
            lookahead.after_step(_unwrap(model), epoch, step, total_steps)
        loss_sum += loss.detach() * len(indices)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(indices)
        bar.update(1)
    bar.close()
    if lookahead is not None:
        lookahead.end_epoch(_unwrap(model))
    return loss_sum.item() / max(1, seen), correct.item() / max(1, seen), step


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


VIEWS = ("single", "mirror", "mirror-translate")


def view_logits(model: nn.Module, images: torch.Tensor, views: str = "single") -> torch.Tensor:
    """Logits of normalised ``images`` from one view or an average over several (test-time
    augmentation, for comparison with published figures that use it; fmw's own figures are
    ``single``). ``mirror``: the mean of the image and its mirror image. ``mirror-translate``: as
    airbench evaluates (Jordan 2024): half the ``mirror`` logits plus a quarter each of the
    ``mirror`` logits of the image shifted one pixel up-left and one pixel down-right (reflect
    padding)."""
    if views not in VIEWS:
        raise ValueError(f"unknown views {views!r}; expected one of: {', '.join(VIEWS)}")

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(x) + model(x.flip(3)))

    if views == "single":
        return model(images)
    if views == "mirror":
        return mirrored(images)
    h, w = images.shape[2:]
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, dy : dy + h, dx : dx + w].contiguous(memory_format=torch.channels_last) for dy, dx in ((0, 0), (2, 2))]
    return 0.5 * mirrored(images) + 0.25 * (mirrored(shifted[0]) + mirrored(shifted[1]))


@torch.no_grad()
def predict(
    model: nn.Module,
    split: ImageSplit,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 1000,
    views: str = "single",
) -> torch.Tensor:
    """Predicted class of every image of ``split`` (model in eval mode; ``views``: see ``view_logits``)."""
    model.eval()
    predictions = []
    for indices in batches(len(split), batch_size, None):
        images = normalize(split.images[indices].to(device), mean, std).contiguous(memory_format=torch.channels_last)
        predictions.append(view_logits(model, images, views).argmax(1).cpu())
    return torch.cat(predictions)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("FMW_DEVICE", "") != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def say(message: str) -> None:
    """Print a progress line at once, also when stdout is a file or a pipe."""
    print(message, flush=True)


def check_ranks_agree(model: nn.Module, rank: int, world: int, log=say) -> None:
    """Gather every rank's weights and buffers and fail unless all are bit-identical."""
    state = torch.cat([tensor.detach().flatten().double() for tensor in model.state_dict().values()])
    gathered = [torch.empty_like(state) for _ in range(world)]
    dist.all_gather(gathered, state)
    differing = [other for other in range(world) if not torch.equal(gathered[other], gathered[0])]
    if differing:
        raise RuntimeError(f"ranks {differing} ended with weights different from rank 0's")
    log(f"rank {rank}: all {world} ranks hold identical weights ({state.numel()} values)")


def train(
    recipe: Recipe,
    data: str | None,
    out: Path | None,
    device_name: str | None = None,
    progress: bool = True,
    log=say,
    train_split: ImageSplit | None = None,
    test_split: ImageSplit | None = None,
) -> tuple[FMWNet, CheckpointMetadata]:
    """Train a model by ``recipe`` and, on rank 0, write its checkpoint to ``out``."""
    rank, world = _distributed()
    device = select_device(device_name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if recipe.batch_size % world:
        raise ValueError(f"batch size {recipe.batch_size} is not divisible by the {world} processes")
    torch.manual_seed(recipe.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    train_split = train_split or load_split(data, "train")
    test_split = test_split if test_split is not None else load_split(data, "test")
    if len(train_split) < recipe.batch_size:
        raise ValueError(f"{len(train_split)} training images are fewer than one batch of {recipe.batch_size}")
    mean, std = dataset_statistics(train_split.images)
    config = NetConfig(
        weighting=recipe.weighting,
        num_classes=len(train_split.class_names),
        widths=tuple(recipe.widths),
        stem_width=recipe.stem_width,
    )
    started = time.perf_counter()
    model = build_model(config)
    model.whitening.fit(normalize(train_split.images[whitening_sample(len(train_split), recipe.seed)], mean, std))
    model = model.to(device).to(memory_format=torch.channels_last)
    trained: nn.Module = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(recipe.seed)
    flip_base = torch.rand(len(train_split), generator=generator) < 0.5
    lookahead = Lookahead(recipe.lookahead_from_epoch, recipe.lookahead_every)
    total_steps = recipe.epochs * (len(train_split) // recipe.batch_size)
    step = 0
    history = []
    show = progress and rank == 0
    for epoch in range(1, recipe.epochs + 1):
        epoch_start = time.perf_counter()
        if epoch - 1 == recipe.whiten_bias_epochs:
            # The whitening bias has had its epochs. Taking it out of autograd also spares the
            # gradient with respect to the first block's input (its largest convolution): steps
            # 10-13% shorter (bench/train_step_profile.py); the group's zero rate alone would not.
            model.whitening.bias.requires_grad_(False)
            if world > 1:  # DistributedDataParallel fixes the set of trained parameters when it wraps
                trained = None
                gc.collect()  # the old wrapper's reducer holds hooks on the parameters
                trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        loss, accuracy, step = train_one_epoch(
            trained, optimizer, train_split, recipe, mean, std, generator, device, step, total_steps, rank, world, show,
            epoch=epoch - 1, flip_base=flip_base, lookahead=lookahead,
        )
        seconds = time.perf_counter() - epoch_start
        rate = (len(train_split) // recipe.batch_size) * recipe.batch_size / seconds
        history.append({"epoch": epoch, "loss": round(loss, 4), "train_top1": round(accuracy, 4), "images_per_s": round(rate, 1)})
        if rank == 0:
            log(f"epoch {epoch:>3}/{recipe.epochs}  loss {loss:.4f}  train top-1 {accuracy:.4f}  {rate:,.0f} images/s")
    train_seconds = time.perf_counter() - started
    model.whitening.bias.requires_grad_(True)
    model.eval()
    metrics: dict = {"train_seconds": round(train_seconds, 1), "history": history}
    if rank == 0 and len(test_split):
        from fmw.evaluate import accuracy_report

        metrics.update(accuracy_report(model, test_split, mean, std, device, ablate=True).summary())
        log(f"test top-1 {metrics['test_top1']:.4f}  with weighting switched off {metrics['test_top1_weighting_off']:.4f}")
    metrics.update(
        parameters=count_parameters(model),
        multiply_adds=count_multiply_adds(model),
        machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpu, torch {torch.__version__}, {device}".strip(),
        world_size=world,
    )
    recipe_record = {**asdict(recipe), "widths": list(recipe.widths), "schedule": list(recipe.schedule), "data": str(train_split.source)}
    metadata = CheckpointMetadata(
        architecture=config,
        class_names=list(train_split.class_names),
        mean=mean,
        std=std,
        input_size=tuple(train_split.images.shape[2:]),
        metrics=metrics,
        recipe=recipe_record,
    )
    if rank == 0 and out is not None:
        save_checkpoint(out, model, metadata)
        log(f"wrote {out}")
    if world > 1:
        for buffer in model.buffers():  # BatchNorm statistics are per rank; rank 0's are the ones saved
            dist.broadcast(buffer, src=0)
        check_ranks_agree(model, rank, world, log)
    return model, metadata


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Recipe()
    parser = argparse.ArgumentParser(prog="python -m fmw train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weighting", choices=list(WEIGHTING_LAYERS), default=defaults.weighting)
    parser.add_argument("--data", default=None, help="zip/dir in ImageFolder layout, or torchvision:DIR (default: ../shared/data/cifar10-jpg.zip)")
    parser.add_argument("--download", action="store_true", help="with --data torchvision:DIR, download CIFAR-10 there")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--widths", type=int, nargs="+", default=list(defaults.widths))
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default=defaults.optimizer,
                        help="sgd: Nesterov SGD for every parameter; muon: Muon for the blocks' 3x3 filters, SGD for the rest")
    parser.add_argument("--muon-lr", type=float, default=defaults.muon_lr, help="peak Muon rate (with --optimizer muon)")
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast is the default)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps; or set FMW_DEVICE")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N images per class (quick runs)")
    parser.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                        help="re-encode every train and test image as JPEG at quality Q (1-95) first: what more "
                             "compression costs (the split's source in the checkpoint says so)")
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
        _, metadata = train(recipe, args.data, args.out, args.device, not args.quiet, train_split=train_split, test_split=test_split)
        if dist.is_initialized():
            # Free the DistributedDataParallel wrapper (reference cycles: only the cycle collector frees
            # it) while the process group is alive, then wait for every rank, before destroying the
            # group. Rank 0 aborted now and then at exit ("terminate called without an active
            # exception"); Gloo work outliving its group at interpreter shutdown is the suspected cause
            # (cf. pytorch PR 179291), not a proven one.
            gc.collect()
            dist.barrier()
    except (DataError, ValueError) as error:
        print(f"fmw train: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {k: v for k, v in metadata.metrics.items() if k != "history"}
        print(json.dumps(summary, indent=2))
    return 0
