"""Predicting every image of a split, from one view or averaged over test-time views (mirror,
mirror and translate) for comparison with published figures."""

from __future__ import annotations

import torch
from torch import nn

from fmw.io import ImageSplit, normalize
from fmw.io.datasets import batches

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
    shifted = [
        padded[:, :, dy : dy + h, dx : dx + w].contiguous(memory_format=torch.channels_last)
        for dy, dx in ((0, 0), (2, 2))
    ]
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
