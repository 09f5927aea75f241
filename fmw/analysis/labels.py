"""Which of a model's classes an image folder's class folders are: by name, or by WordNet id for
ImageNet models (the synset list timm installs, never downloaded); when they are not the model's
classes, statistics group by folder and accuracy cannot be measured, and ``LabelMatch`` says why."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

__all__ = ["IMAGENET_CLASSES", "LabelMatch", "imagenet_synsets", "match_labels"]

IMAGENET_CLASSES = 1000
WORDNET_ID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class LabelMatch:
    """How class folders relate to a model's classes. ``model_index``: the model's class index of
    each folder (None when they do not match); ``names``: what reports call each folder (the
    model's class name when matched, else the folder's name); ``reason``: one sentence for users."""

    folders: list[str]
    names: list[str]
    model_index: list[int] | None
    how: Literal["name", "wordnet", "folder"]
    reason: str

    @property
    def matched(self) -> bool:
        return self.model_index is not None


def _normalised(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").casefold().split())


@cache
def imagenet_synsets() -> tuple[str, ...] | None:
    """ImageNet-1k's WordNet ids in class-index order, from ``timm/data/_info/imagenet_synsets.txt``
    (found without importing timm); None when timm is not installed."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info" / "imagenet_synsets.txt"
    if not path.is_file():
        return None
    synsets = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return synsets if len(synsets) == IMAGENET_CLASSES else None


def _listed(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(repr(name) for name in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def match_labels(folders: Sequence[str], model_classes: Sequence[str]) -> LabelMatch:
    """Match class ``folders`` to ``model_classes``: by name (ignoring case, and ``_``/``-`` against
    spaces), else, when every folder is a WordNet id (n01440764) and the model has ImageNet's 1000
    classes, by ImageNet's synset order. Otherwise the folders group the images on their own."""
    folders = list(folders)
    by_name: dict[str, int] = {}
    for index, name in enumerate(model_classes):
        by_name.setdefault(_normalised(name), index)
    indices = [by_name.get(_normalised(folder)) for folder in folders]
    found = [index for index in indices if index is not None]
    if len(found) == len(folders) and len(set(found)) == len(found):
        return LabelMatch(
            folders, [model_classes[i] for i in found], found, "name", "class folders are the model's classes by name"
        )
    synsets = imagenet_synsets()
    wordnet = all(WORDNET_ID.fullmatch(folder) for folder in folders)
    if wordnet and synsets is not None and len(model_classes) == IMAGENET_CLASSES:
        unknown = [folder for folder in folders if folder not in synsets]
        if not unknown:
            positions = [synsets.index(folder) for folder in folders]
            return LabelMatch(
                folders,
                [model_classes[i] for i in positions],
                positions,
                "wordnet",
                "class folders are ImageNet WordNet ids, matched to the model's 1000 classes in ImageNet's "
                "synset order (timm's imagenet_synsets.txt)",
            )
        why = f"folders {_listed(unknown)} are not ImageNet-1k WordNet ids"
    elif wordnet and synsets is None:
        why = "the folders are WordNet ids, and matching them needs timm's synset list (pip install timm)"
    elif wordnet:
        why = f"the folders are WordNet ids, but the model has {len(model_classes)} classes, not ImageNet's 1000"
    elif len(found) < len(folders):
        missing = [folder for folder, index in zip(folders, indices) if index is None]
        why = f"folders {_listed(missing)} are not among the model's classes ({_listed(list(model_classes))})"
    else:
        why = "several folders name the same class of the model"
    return LabelMatch(
        folders,
        folders,
        None,
        "folder",
        f"{why}; statistics are grouped by folder and accuracy is not measured",
    )
