"""GPU safety: on a CUDA out-of-memory error analyses step down to smaller batches, then the CPU,
with a notice; probe and analysis leave no hooks, no tensor references and no GPU memory behind.

The out-of-memory path is simulated on the CPU; the GPU memory check needs a CUDA device.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

import fmw.analysis.images
import fmw.analysis.memory
from fmw.analysis import analyse_image, analyse_images, analyse_images_on_device, run_with_memory_fallback
from fmw.io import load_checkpoint
from fmw.models import ModelHandle
from fmw.sites import probe

IMAGES = 8


@pytest.fixture
def loaded(checkpoint_factory) -> ModelHandle:
    return load_checkpoint(checkpoint_factory("cbam", seed=5, stem_width=8, widths=(8, 16))).handle()


@pytest.fixture
def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(IMAGES)]


def assert_same_analyses(found, expected) -> None:
    assert len(found) == len(expected)
    for ours, theirs in zip(found, expected):
        assert [p.class_name for p in ours.predictions] == [p.class_name for p in theirs.predictions]
        np.testing.assert_allclose(
            [p.probability for p in ours.predictions], [p.probability for p in theirs.predictions], rtol=1e-5, atol=1e-6
        )
        for mine, other in zip(ours.sites, theirs.sites):
            np.testing.assert_allclose(mine.after, other.after, rtol=1e-4, atol=1e-5)
            for stage, gate in other.gates.items():
                np.testing.assert_allclose(mine.gates[stage], gate, rtol=1e-4, atol=1e-5)


class RunsOutOfMemory:
    """A stand-in for the dashboard's model loader: gives the CPU model for every device asked for,
    and makes its forward pass raise CUDA out-of-memory while ``fails(device, batch)`` says so."""

    def __init__(self, loaded: ModelHandle, fails, monkeypatch) -> None:
        self.loaded, self.fails, self.releases = loaded, fails, 0
        self.calls: list[tuple[str, int]] = []
        self.device = "cpu"
        forward = loaded.model.forward

        def forward_or_fail(images: torch.Tensor) -> torch.Tensor:
            self.calls.append((self.device, images.shape[0]))
            if self.fails(self.device, images.shape[0]):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return forward(images)

        monkeypatch.setattr(loaded.model, "forward", forward_or_fail)
        monkeypatch.setattr(fmw.analysis.memory, "release_cuda_memory", self.release)

    def release(self) -> None:
        self.releases += 1

    def __call__(self, device: str) -> ModelHandle:
        self.device = device
        return self.loaded


def test_batched_analyses_match_one_image_at_a_time(loaded, photos) -> None:
    batched = analyse_images(loaded, photos, resolution=32, batch_size=3)
    assert_same_analyses(batched, [analyse_image(loaded, photo, resolution=32) for photo in photos])
    assert len({a.predictions[0].probability for a in batched}) == IMAGES  # each image's own result


def test_out_of_memory_halves_the_batch_until_it_fits(loaded, photos, monkeypatch) -> None:
    expected = analyse_images(loaded, photos, resolution=32)
    model = RunsOutOfMemory(loaded, lambda device, batch: batch > 2, monkeypatch)
    run = analyse_images_on_device(model, photos, "cuda", resolution=32, batch_size=8)
    assert (run.device, run.batch_size) == ("cuda", 2)
    assert (
        run.notice
        == "The GPU ran out of memory, so this ran in batches of 4 then in batches of 2. Results are the same."
    )
    assert model.calls[:2] == [("cuda", 8), ("cuda", 4)] and model.calls[2:] == [("cuda", 2)] * 4
    assert model.releases == 2
    assert_same_analyses(run.value, expected)


def test_out_of_memory_at_batch_one_falls_back_to_the_cpu(loaded, photos, monkeypatch) -> None:
    expected = analyse_images(loaded, photos[:3], resolution=32)
    model = RunsOutOfMemory(loaded, lambda device, batch: device.startswith("cuda"), monkeypatch)
    run = analyse_images_on_device(model, photos[:3], "cuda:0", resolution=32, batch_size=2)
    assert (run.device, run.batch_size) == ("cpu", 1)
    assert run.notice is not None and run.notice.endswith("in batches of 1 then on the CPU. Results are the same.")
    assert [device for device, _ in model.calls] == ["cuda:0", "cuda:0", "cpu", "cpu", "cpu"]
    assert model.releases == 2
    assert_same_analyses(run.value, expected)


def test_a_run_that_fits_has_no_notice_and_cpu_out_of_memory_is_not_hidden(loaded, photos, monkeypatch) -> None:
    run = run_with_memory_fallback(lambda device, batch: (device, batch), "cuda", 4)
    assert (run.value, run.notice) == (("cuda", 4), None)
    model = RunsOutOfMemory(loaded, lambda device, batch: True, monkeypatch)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="on cpu even with a batch of 1"):
        analyse_images_on_device(model, photos, "cuda", resolution=32, batch_size=1)


def test_probe_leaves_no_hooks_and_keeps_no_tensors(loaded) -> None:
    model = loaded.model
    images = torch.randn(2, 3, 32, 32)
    result = probe(model, images, keep_on_device=True)
    recorded = [result.logits] + [t for r in result.sites for t in (r.before, r.after, *r.gates.values())]
    references = [weakref.ref(tensor) for tensor in recorded]
    input_reference = weakref.ref(images)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    del result, recorded, images
    gc.collect()
    assert [reference() for reference in references] == [None] * len(references)
    assert input_reference() is None


def test_an_analysis_keeps_no_probe_tensors_alive(loaded, photos, monkeypatch) -> None:
    references = []

    def recording_probe(model, images, **options):
        result = probe(model, images, **options)
        references.extend(weakref.ref(r.after) for r in result.sites)
        return result

    monkeypatch.setattr(fmw.analysis.images, "probe", recording_probe)
    analyses = analyse_images(loaded, photos, resolution=32, batch_size=4)
    gc.collect()
    assert len(references) == 2 * len(analyses[0].sites)
    assert [reference() for reference in references] == [None] * len(references)
    assert all(site.after.base is None for analysis in analyses for site in analysis.sites)  # own copies


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_memory_returns_to_its_baseline_after_probe_and_analysis(checkpoint_factory, photos) -> None:
    loaded = load_checkpoint(checkpoint_factory("cbam", seed=5), device="cuda").handle()
    analyse_images(loaded, photos, resolution=64)  # warm up cuDNN and the allocator
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    result = probe(loaded.model, torch.randn(16, 3, 128, 128, device="cuda"), keep_on_device=True)
    assert torch.cuda.memory_allocated() > baseline
    del result
    analyses = analyse_images(loaded, photos, resolution=128, batch_size=4)
    run = analyse_images_on_device(lambda device: loaded, photos, "cuda", resolution=128)
    torch.cuda.synchronize()
    gc.collect()
    assert torch.cuda.memory_allocated() == baseline
    assert run.notice is None and len(analyses) == len(run.value) == IMAGES
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in loaded.model.modules())


def test_probe_sees_a_site_replaced_after_an_earlier_probe(loaded) -> None:
    model = loaded.model
    images = torch.randn(1, 3, 32, 32)
    assert probe(model, images).names == ["stages.0.weighting", "stages.1.weighting"]
    model.stages[0].weighting = torch.nn.Identity()  # the remembered sites must not be reused
    assert probe(model, images).names == ["stages.1.weighting"]
