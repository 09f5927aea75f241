"""Small models for the task tests: a YOLO-style detector with SE and CBAM-style gates in its neck
whose head returns a list of three maps (and a postprocess function turning them into boxes), a
model returning a dict, and torchvision's segmenters and detector built with no download."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import detection, segmentation

CLASSES = 3
ANCHORS = 1
CHANNELS = ANCHORS * (5 + CLASSES)  # per anchor: x, y, w, h, objectness, class scores


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class ChannelGate(nn.Module):
    """Squeeze-excitation written by hand: x * sigmoid(MLP(mean over positions))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(channels, channels // 4, 1), nn.ReLU(), nn.Conv2d(channels // 4, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    """CBAM's spatial stage: x * sigmoid(conv7x7([mean, max] over channels))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class TinyYolo(nn.Module):
    """Backbone of strided conv blocks, a neck with a channel gate and a spatial gate per scale,
    and a head of 1x1 convolutions returning three maps (N, 8, H/8, W/8), (.., H/16, ..), (.., H/32, ..)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv(3, 8, 2), conv(8, 16, 2), conv(16, 16, 2))
        self.down16 = conv(16, 32, 2)
        self.down32 = conv(32, 32, 2)
        self.neck = nn.ModuleList(nn.Sequential(ChannelGate(c), SpatialGate()) for c in (16, 32, 32))
        self.head = nn.ModuleList(nn.Conv2d(c, CHANNELS, 1) for c in (16, 32, 32))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p8 = self.stem(x)
        p16 = self.down16(p8)
        p32 = self.down32(p16)
        return [head(neck(p)) for p, neck, head in zip((p8, p16, p32), self.neck, self.head, strict=True)]


def build() -> TinyYolo:
    return TinyYolo()


def postprocess(output: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """YOLO-style decoding: per cell, centre = (cell + sigmoid(xy)) * stride, size = exp(wh) * stride,
    score = sigmoid(objectness) * max sigmoid(class); boxes (x1, y1, x2, y2) in input pixels."""
    results = []
    for image in range(output[0].shape[0]):
        boxes, scores, labels = [], [], []
        for maps, stride in zip(output, (8, 16, 32), strict=True):
            cells = maps[image].reshape(5 + CLASSES, -1)
            height, width = maps.shape[2:]
            ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
            centre_x = (xs.reshape(-1) + cells[0].sigmoid()) * stride
            centre_y = (ys.reshape(-1) + cells[1].sigmoid()) * stride
            half_w, half_h = cells[2].clamp(max=4).exp() * stride / 2, cells[3].clamp(max=4).exp() * stride / 2
            class_scores, class_labels = cells[5:].sigmoid().max(0)
            boxes.append(torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], 1))
            scores.append(cells[4].sigmoid() * class_scores)
            labels.append(class_labels)
        results.append({"boxes": torch.cat(boxes), "labels": torch.cat(labels), "scores": torch.cat(scores)})
    return results


def raising_postprocess(output: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    raise RuntimeError("decoding failed on purpose")


def wrong_postprocess(output: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"boxes": output[0]}


class DictModel(nn.Module):
    """A classifier with an SE gate returning {"logits": (N, 4), "features": (N, 8, H, W)}."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(3, 8)
        self.gate = ChannelGate(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.gate(self.conv(x))
        return {"logits": self.fc(features.mean((2, 3))), "features": features}


def lraspp() -> nn.Module:
    return segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()


def deeplab() -> nn.Module:
    return segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None).eval()


def faster_rcnn() -> nn.Module:
    """Random weights, every box kept (score threshold 0) so that outputs have boxes to compare."""
    return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0
    ).eval()
