"""``python -m bench.probe_overhead`` measures a detector and a segmenter at batch 1 (not run here:
only its cases are checked, each variant once, on the inputs the benchmark gives them)."""

from __future__ import annotations

import torch

from bench import probe_overhead
from fmw.sites import find_sites, probe


def test_the_benchmark_has_a_detector_given_a_list_and_a_segmenter_at_batch_1() -> None:
    cases = probe_overhead.cases()
    detector, segmenter = cases["fasterrcnn_mbv3_320"], cases["lraspp_mbv3"]
    assert (detector.batches, detector.image_list, detector.size) == ((1,), True, 320)
    assert (segmenter.batches, segmenter.image_list, segmenter.size) == ((1,), False, 320)
    assert all(
        case.batches == (1, 32) for name, case in cases.items() if name not in ("fasterrcnn_mbv3_320", "lraspp_mbv3")
    )
    for case, sites in ((detector, 8), (segmenter, 9)):
        model = case.build().eval()
        batch = torch.rand(1, 3, case.size, case.size)
        images = list(batch) if case.image_list else batch
        assert len(probe(model, images).sites) == sites
        assert len(find_sites(model, example=images, rediscover=True)) == sites
        probe_overhead.plain(model, images)
