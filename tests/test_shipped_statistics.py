"""The gate statistics shipped in checkpoints/stats/ (made by ``fmw stats ... --split test --digits 4``,
see fmw/analysis/findings.py for the command), checked three ways.

Without data, for every shipped checkpoint:
- a file exists, is small (under ``MAXIMUM_BYTES``), and records the SHA-256 of the checkpoint beside it;
- it covers the test split (10,000 images, grouped by true label) and its sites (names, kinds,
  channels, output sizes, relative depths) are those fmw finds in the checkpoint at 32 px;
- it is consistent with itself: each stage's dataset mean is the count-weighted mean of its class
  means, and its class specificity, recomputed from the file's own class means, standard deviations
  and counts (the within-class variance follows from the law of total variance), matches the stored
  value to within what the 4-digit rounding allows;
- the cheap full recomputation: ``scale``'s gate does not depend on the image, so its class means
  must equal the learned vector itself, read from the checkpoint.

With the CIFAR-10 test split (skipped with the reason when the zip is absent), for every checkpoint
with gates:
- the class counts equal the split's labels (every image counted once, by its true class);
- statistics recomputed by the same code on a subset (the first ``SUBSET`` images of each class, as
  ``fmw stats --limit`` takes them) agree with the shipped ones within sampling error: for every class
  and channel (or position) the difference of class means, divided by its standard error
  sqrt(s^2 (1/n - 1/N) + rounding^2) (n, N: the class's images in the subset and in the split; s: the
  gate's standard deviation over the whole split, from the file, which bounds the within-class one on
  average; the subset's own spread would not do: a few of the other images can have very different
  gates), must have mean square at most ``MEAN_SQUARE_Z`` (below 1 when they agree: measured 0.1 to
  1.0) and never exceed ``MAX_Z`` (measured at most 4.2); each stage's class specificity must be
  within ``SPECIFICITY_SE`` bootstrap standard errors (resampling the subset's images within each
  class; measured at most 1.9) of the shipped one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch

from fmw.analysis import analyse_image
from fmw.analysis.findings import file_sha256, shipped_statistics, statistics_path
from fmw.analysis.stats import GateStatistics, class_specificity, split_gate_statistics
from fmw.io import load_checkpoint, load_split, normalize
from fmw.layers import WEIGHTING_LAYERS
from fmw.sites import probe
from tests.conftest import CIFAR_ZIP, REPO
from tests.optional import approx_optional

CHECKPOINTS = REPO / "checkpoints"
KINDS = list(WEIGHTING_LAYERS)
GATED = [kind for kind in KINDS if kind != "none"]
# a coordinate gate keeps C x H (and C x W) values per class, a full-size gate its C x H x W dataset mean: at
# 4 digits the coord and simam files are about 0.37 MB, the channel and spatial ones under 64 kB
MAXIMUM_BYTES = 400_000
DIGITS = 4
SUBSET = 40
MEAN_SQUARE_Z = 2.0
MAX_Z = 6.0
SPECIFICITY_SE = 4.0
BOOTSTRAP_ROUNDS = 30


def shipped(kind: str) -> GateStatistics:
    found = shipped_statistics(CHECKPOINTS / f"{kind}.safetensors")
    assert found.problem is None, found.problem
    assert found.statistics is not None
    return found.statistics


def rounding(values: np.ndarray) -> np.ndarray:
    """Half a unit in the last of ``DIGITS`` significant digits: the most rounding moved each value."""
    magnitude = np.floor(np.log10(np.maximum(np.abs(values), 1e-30)))
    return 0.5 * 10.0 ** (magnitude - DIGITS + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_every_checkpoint_ships_small_statistics_of_itself_on_the_test_split(kind):
    checkpoint = CHECKPOINTS / f"{kind}.safetensors"
    path = statistics_path(checkpoint)
    assert path.is_file() and path.stat().st_size < MAXIMUM_BYTES, f"{path}: {path.stat().st_size} bytes"
    recorded = json.loads(path.read_text())["checkpoint"]
    assert recorded == {"file": checkpoint.name, "sha256": file_sha256(checkpoint)}
    statistics = shipped(kind)
    assert (statistics.grouping, statistics.images) == ("label", 10_000)
    assert statistics.source.endswith(":test")
    sites = analyse_image(load_checkpoint(checkpoint).handle(), skimage.data.chelsea()).sites
    assert [(s.name, s.kind, s.channels) for s in statistics.sites] == [(x.name, x.kind, x.channels) for x in sites]
    assert [s.resolution for s in statistics.sites] == [site.before.shape[1:] for site in sites]
    np.testing.assert_allclose([s.relative_depth for s in statistics.sites], np.linspace(0, 1, len(sites)))
    assert all(set(s.stages) == set(site.gates) for s, site in zip(statistics.sites, sites))


@pytest.mark.parametrize("kind", GATED)
def test_shipped_statistics_agree_with_themselves(kind):
    statistics = shipped(kind)
    counts = statistics.class_counts.astype(np.float64)
    total = counts.sum()
    for site in statistics.sites:
        for stage in site.stages.values():
            means = stage.class_mean
            tolerance = rounding(means).max() + rounding(stage.mean).max()
            np.testing.assert_allclose(counts @ means / total, stage.mean, atol=tolerance)
            between = counts @ np.square(means - stage.mean) / total
            within = np.maximum(np.square(stage.std) - between, 0.0)
            sums = means * counts[:, None]
            squares = counts[:, None] * (np.square(means) + within)  # per class: n (m^2 + pooled within variance)
            specificity, _ = class_specificity(sums, squares, counts)
            assert specificity == approx_optional(stage.specificity, abs=2e-3), (site.name, stage.stage)


def test_the_static_scale_gate_is_its_learned_vector_for_every_class():
    """Cheap in full: scale's gate is a parameter, so the class means of the whole split are known
    without a pass over it."""
    loaded = load_checkpoint(CHECKPOINTS / "scale.safetensors")
    records = probe(loaded.model, torch.zeros(1, 3, 32, 32)).sites
    for site, record in zip(shipped("scale").sites, records):
        vector = record.gates["channel"].reshape(-1).numpy().astype(np.float64)
        stage = site.stages["channel"]
        np.testing.assert_allclose(stage.class_mean, np.broadcast_to(vector, stage.class_mean.shape), rtol=1e-3)
        assert stage.specificity == 0.0 and np.all(stage.std < 1e-3)


@pytest.fixture(scope="module")
def test_split():
    if not CIFAR_ZIP.is_file():
        pytest.skip(f"CIFAR-10 (JPEG) zip not found at {CIFAR_ZIP}; the shipped statistics cannot be recomputed")
    return load_split(CIFAR_ZIP, "test")


def per_image_gates(model, split, mean, std) -> dict[tuple[str, str], np.ndarray]:
    """Every image's gate values per (site, stage), (N, D), in split order."""
    gates: dict[tuple[str, str], list[np.ndarray]] = {}
    for start in range(0, len(split), 200):
        inputs = normalize(split.images[start : start + 200], tuple(mean), tuple(std))
        for record in probe(model, inputs).sites:
            for stage, gate in record.gates.items():
                gates.setdefault((record.name, stage), []).append(gate.reshape(gate.shape[0], -1).double().numpy())
    return {key: np.concatenate(parts) for key, parts in gates.items()}


def bootstrap_specificity_se(values: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0) -> float:
    """Standard error of a stage's class specificity over the subset, by resampling images within classes."""
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(BOOTSTRAP_ROUNDS):
        chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), (labels == c).sum()) for c in range(classes)])
        sample, sample_labels = values[chosen], labels[chosen]
        sums = np.stack([sample[sample_labels == c].sum(0) for c in range(classes)])
        squares = np.stack([np.square(sample[sample_labels == c]).sum(0) for c in range(classes)])
        estimate, _ = class_specificity(sums, squares, np.bincount(sample_labels, minlength=classes))
        estimates.append(0.0 if estimate is None else estimate)
    return float(np.std(estimates, ddof=1))


@pytest.mark.slow
@pytest.mark.parametrize("kind", GATED)
def test_shipped_statistics_agree_with_a_fresh_computation_on_a_subset(kind, test_split):
    statistics = shipped(kind)
    assert statistics.class_counts.tolist() == torch.bincount(test_split.labels, minlength=10).tolist()
    loaded = load_checkpoint(CHECKPOINTS / f"{kind}.safetensors")
    metadata = loaded.metadata
    subset = test_split.subset(SUBSET)
    fresh = split_gate_statistics(loaded.model, subset, metadata.mean, metadata.std)
    labels = subset.labels.numpy()
    gates = per_image_gates(loaded.model, subset, metadata.mean, metadata.std)
    n, population = fresh.class_counts[:, None], statistics.class_counts[:, None]
    for site, fresh_site in zip(statistics.sites, fresh.sites):
        for name, stage in site.stages.items():
            sampling = np.square(stage.std[None, :]) * (1 / n - 1 / population)
            z = (fresh_site.stages[name].class_mean - stage.class_mean) / np.sqrt(
                sampling + np.square(rounding(stage.class_mean))
            )
            assert np.mean(np.square(z)) <= MEAN_SQUARE_Z and np.abs(z).max() <= MAX_Z, (site.name, name)
            se = bootstrap_specificity_se(gates[(site.name, name)], labels, len(statistics.class_names))
            difference = abs(fresh_site.stages[name].specificity - stage.specificity)
            assert difference <= SPECIFICITY_SE * se + 1e-3, (site.name, name, difference, se)
