"""Training the fmw family on an image split: the recipe, optimiser groups, schedule, lookahead
averaging, the epoch loop (also under torchrun / DistributedDataParallel) and the checkpoint."""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from fmw.analysis.distributed import process_device, process_group
from fmw.device import select_device
from fmw.io import CheckpointMetadata, ImageSplit, load_split, normalize, save_checkpoint
from fmw.io.datasets import augment_batch, batches
from fmw.models import (
    FMWNet,
    NetConfig,
    PatchWhitening,
    WeightedBlock,
    build_model,
    count_multiply_adds,
    count_parameters,
)
from fmw.training.optim import Muon, OptimizerGroup, TrainingOptimizer


@dataclass
class Recipe:
    """Training hyperparameters. ``learning_rate`` is the peak rate for the mean loss over a
    batch; ``weight_decay`` is PyTorch's coefficient for the convolution and linear weights (the
    BatchNorm biases get ``bias_lr_scale`` times the rate and the same absolute decay). airbench93's
    decoupled values (lr 11.5 and decay 0.0153 per 1024 examples, momentum 0.85) convert to
    1.5 and 0.00133 at batch 1024."""

    weighting: str = "none"
    epochs: int = 12  # airbench93 uses 11; checkpoints/README.md gives the training times this takes
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


def backbone_filters(model: nn.Module) -> list[torch.Tensor]:
    """The weights of the blocks' 3x3 convolutions (not the whitening filters, not the weighting
    layers' own parameters): what ``Recipe.optimizer == "muon"`` hands to ``Muon``."""
    return [
        conv.weight
        for block in model.modules()
        if isinstance(block, WeightedBlock)
        for conv in (block.conv1, block.conv2)
        if conv.weight.requires_grad
    ]


def build_optimizer(model: nn.Module, recipe: Recipe) -> TrainingOptimizer:
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
        for _name, parameter in module.named_parameters(recurse=False):
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
        {
            "params": whiten_biases,
            "lr": lr,
            "weight_decay": recipe.weight_decay,
            "peak_lr": lr,
            "until_epoch": recipe.whiten_bias_epochs,
        },
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
            self.update(model, self.average, 0.95**self.every * (step / total) ** 3)

    def end_epoch(self, model: nn.Module) -> None:
        if self.average is not None:
            self.update(model, self.average, 1.0)

    @staticmethod
    @torch.no_grad()
    def update(model: nn.Module, average: dict[str, torch.Tensor], decay: float) -> None:
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                average[key].lerp_(value, 1 - decay)
                value.copy_(average[key])


def autocast_for(device: torch.device, enabled: bool) -> torch.autocast:
    usable = enabled and (device.type == "cuda" or (device.type == "cpu" and torch.backends.mkldnn.is_available()))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=usable)


def train_one_epoch(
    model: nn.Module,
    optimizer: TrainingOptimizer,
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


def say(message: str) -> None:
    """Print a progress line at once, also when stdout is a file or a pipe."""
    print(message, flush=True)


def check_ranks_agree(model: nn.Module, rank: int, world: int, log: Callable[[str], None] = say) -> None:
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
    log: Callable[[str], None] = say,
    train_split: ImageSplit | None = None,
    test_split: ImageSplit | None = None,
) -> tuple[FMWNet, CheckpointMetadata]:
    """Train a model by ``recipe`` and, on rank 0, write its checkpoint to ``out``. Under torchrun
    every process trains its share of each batch (DistributedDataParallel, NCCL on GPUs, else gloo)
    and the group is left when training ends."""
    device = process_device(select_device(device_name))
    with process_group(device) as (rank, world):
        return _train(recipe, data, out, device, rank, world, progress, log, train_split, test_split)


def _train(
    recipe: Recipe,
    data: str | None,
    out: Path | None,
    device: torch.device,
    rank: int,
    world: int,
    progress: bool,
    log: Callable[[str], None],
    train_split: ImageSplit | None,
    test_split: ImageSplit | None,
) -> tuple[FMWNet, CheckpointMetadata]:
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
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
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
            # gradient with respect to the first block's input (its largest convolution), which the
            # group's zero rate alone would not (bench/train_step_profile.py measures the saving).
            model.whitening.bias.requires_grad_(False)
            if world > 1:  # DistributedDataParallel fixes the set of trained parameters when it wraps
                del trained
                gc.collect()  # the old wrapper's reducer holds hooks on the parameters
                trained = nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None
                )
        loss, accuracy, step = train_one_epoch(
            trained,
            optimizer,
            train_split,
            recipe,
            mean,
            std,
            generator,
            device,
            step,
            total_steps,
            rank,
            world,
            show,
            epoch=epoch - 1,
            flip_base=flip_base,
            lookahead=lookahead,
        )
        seconds = time.perf_counter() - epoch_start
        rate = (len(train_split) // recipe.batch_size) * recipe.batch_size / seconds
        history.append(
            {"epoch": epoch, "loss": round(loss, 4), "train_top1": round(accuracy, 4), "images_per_s": round(rate, 1)}
        )
        if rank == 0:
            log(f"epoch {epoch:>3}/{recipe.epochs}  loss {loss:.4f}  train top-1 {accuracy:.4f}  {rate:,.0f} images/s")
    train_seconds = time.perf_counter() - started
    model.whitening.bias.requires_grad_(True)
    model.eval()
    metrics: dict = {"train_seconds": round(train_seconds, 1), "history": history}
    if rank == 0 and len(test_split):
        from fmw.analysis.evaluation import accuracy_report

        metrics.update(accuracy_report(model, test_split, mean, std, device, ablate=True).summary())
        log(
            f"test top-1 {metrics['test_top1']:.4f}  "
            f"with weighting switched off {metrics['test_top1_weighting_off']:.4f}"
        )
    metrics.update(
        parameters=count_parameters(model),
        multiply_adds=count_multiply_adds(model),
        machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpu, "
        f"torch {torch.__version__}, {device}".strip(),
        world_size=world,
    )
    recipe_record = {
        **asdict(recipe),
        "widths": list(recipe.widths),
        "schedule": list(recipe.schedule),
        "data": str(train_split.source),
    }
    _, _, height, width = train_split.images.shape
    metadata = CheckpointMetadata(
        architecture=config,
        class_names=list(train_split.class_names),
        mean=mean,
        std=std,
        input_size=(height, width),
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
