"""What the dashboard needs before any page runs (no streamlit here, so ``dashboard/app.py`` warms up
with it before serving): the sample photos it offers (scikit-image's bundled ones: no download, never
CIFAR images) with the CIFAR-10 class a photo shows, and the CPU thread count for inference."""

from __future__ import annotations

import os

import numpy as np

SAMPLE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
DEFAULT_SAMPLE = "chelsea"  # a cat: every shipped checkpoint classifies it correctly (tests/test_dashboard_newcomer.py)
SAMPLE_CLASSES = {"chelsea": "cat"}  # the CIFAR-10 class a sample shows; the others show none of the ten
THREADS_VARIABLE = "FMW_TORCH_THREADS"


def sample_digest(name: str) -> str:
    """What identifies a sample photo's pixels in the caches (uploads: the SHA-256 of their bytes)."""
    return f"sample:{name}"


def sample_rgb(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (available offline), as RGB uint8."""
    import skimage.data

    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    return np.ascontiguousarray(getattr(skimage.data, name)())


def set_torch_threads() -> None:
    """Interactive inference on small inputs is fastest single-threaded, and concurrent sessions then
    each get a core instead of fighting over OpenMP threads; ``FMW_TORCH_THREADS`` overrides."""
    import torch

    torch.set_num_threads(int(os.environ.get(THREADS_VARIABLE, "1")))
