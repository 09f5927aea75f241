"""AppTest of every dashboard view with a detector (torchvision's Faster R-CNN MobileNetV3 320,
random weights, added in the sidebar) and a segmenter (LR-ASPP MobileNetV3, random weights, given as
`fmw dashboard --model torchvision:lraspp_mobilenet_v3_large --random-weights`) beside an fmw
checkpoint: boxes and mask figures with the right boxes and shape, shares summing to 100%, each
view's content for the task or its words on what it does not do."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

import fmw.models.zoo as zoo
from fmw.analysis import analyse_image
from fmw.cli.dashboard import model_entries
from fmw.cli.model_config import MODELS_VARIABLE, entries_to_json
from fmw.io.model_spec import load_model
from fmw.models import load_torchvision_model
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, array, figures, restore_threads, widget  # noqa: F401

DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
DETECTOR_LABEL = f"{DETECTOR} (random weights)"
BOXES = 4  # the detector keeps its best four boxes, whatever their score (random weights score ~1/91)
SEGMENTER_ARGUMENTS = ["--model", "torchvision:lraspp_mobilenet_v3_large", "--random-weights", "--input-size", "128"]


def _build_with_boxes(original):
    def build(name: str, aux_loss: bool = False):
        model = original(name, aux_loss)
        if hasattr(model, "roi_heads"):
            model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, BOXES
        return model

    return build


@pytest.fixture
def app(tmp_path, monkeypatch, restore_threads):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from dashboard import caching, catalog

    directory = tmp_path / "checkpoints"
    make_checkpoint(directory / "channel.safetensors", "channel", seed=5)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(zoo, "_build_torchvision", _build_with_boxes(zoo._build_torchvision))
    entries, _ = model_entries(SEGMENTER_ARGUMENTS)
    monkeypatch.setenv(MODELS_VARIABLE, entries_to_json(entries))
    monkeypatch.chdir(tmp_path)  # no fmw-models.toml here
    catalog.command_line_entries.cache_clear()
    caching.MODELS.clear()
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.selectbox(key="zoo-architecture").set_value(DETECTOR)
    at.radio(key="zoo-weights").set_value("random weights")
    at.button(key="zoo-add").click().run()
    assert not at.exception and not at.error
    yield at
    catalog.command_line_entries.cache_clear()
    caching.MODELS.clear()


def segmenter_label(at) -> str:
    return next(label for label in at.multiselect(key="checkpoints").values if "lraspp" in label)


def expected(which: str):
    if which == "detector":
        return analyse_image(load_torchvision_model(DETECTOR, "random"), skimage.data.chelsea(), threshold=0.0)
    entries, _ = model_entries(SEGMENTER_ARGUMENTS)
    return analyse_image(load_model(entries[0].spec, entries[0].options), skimage.data.chelsea())


def test_compare_draws_boxes_on_the_image_and_the_mask_with_shares(app, monkeypatch):
    monkeypatch.setattr(zoo, "_build_torchvision", _build_with_boxes(zoo._build_torchvision))
    segmenter = segmenter_label(app)
    assert app.multiselect(key="checkpoints").values == ["channel", segmenter, DETECTOR_LABEL]
    specs = figures(app)
    boxes = specs[f"compare-{DETECTOR_LABEL}-boxes"]
    assert [trace["type"] for trace in boxes["data"]] == ["image"], "no box reaches the default threshold of 50%"
    assert any(c.value.startswith(f"0 of {BOXES} box(es) score 50% or more") for c in app.caption)

    app.slider(key="compare-threshold").set_value(0.0).run()
    assert not app.exception and not app.error
    boxes = figures(app)[f"compare-{DETECTOR_LABEL}-boxes"]
    image = array(boxes["data"][0]["z"]) if "z" in boxes["data"][0] else None
    outlines = [trace for trace in boxes["data"] if trace["type"] == "scatter"]
    truth = expected("detector").task_prediction
    assert len(outlines) == len(truth.scores) == BOXES
    chelsea = skimage.data.chelsea()
    for trace in outlines:  # tied random scores make which four boxes survive vary: check each one's frame
        x, y = array(trace["x"]), array(trace["y"])
        assert x[0] == x[3] == x[4] and x[1] == x[2] and y[0] == y[1] == y[4] and y[2] == y[3]
        assert 0 <= x.min() < x.max() <= chelsea.shape[1] and 0 <= y.min() < y.max() <= chelsea.shape[0]
        name, score = trace["name"].rsplit(" ", 1)
        assert name in load_torchvision_model(DETECTOR, "random").class_names and score == "1%"
    assert truth.scores == pytest.approx([0.0114] * BOXES, abs=1e-3)
    assert boxes["layout"]["xaxis"]["range"] == [0, chelsea.shape[1]], "drawn on the user's image, its own size"
    assert image is None or image.shape[:2] == chelsea.shape[:2]
    captions = [c.value for c in app.caption if "input " in c.value]
    assert captions[2].endswith("input 320×512 px (as the detector resized and padded it)")

    mask = figures(app)[f"compare-{segmenter}-mask"]
    heatmap = next(trace for trace in mask["data"] if trace["type"] == "heatmap")
    assert array(heatmap["z"]).shape == (128, 128)
    legend = [trace["name"] for trace in mask["data"] if trace.get("showlegend")]
    truth = expected("segmenter").task_prediction
    assert legend == [f"{name} {share:.1%}" for _, name, share in truth.shares]
    table = next(m.value for m in app.markdown if m.value.startswith("| class | share |"))
    shares = [float(line.split("|")[2].strip().rstrip("%")) for line in table.splitlines()[2:]]
    assert sum(shares) == pytest.approx(100.0, abs=0.1 * len(shares))
    assert next(m.value for m in app.markdown if m.value.startswith("| class | p |")), "the classifier as before"


def test_explorer_attribution_and_weighting_off_per_task(app):
    segmenter = segmenter_label(app)
    app.switch_page("views/explorer.py").run()
    widget(app.selectbox, "Checkpoint").set_value(DETECTOR_LABEL).run()
    assert not app.exception and not app.error
    assert figures(app)["explorer-grids"]["layout"]["title"]["text"].startswith(DETECTOR_LABEL)
    assert any(f"**{DETECTOR_LABEL}** (detection)" in m.value for m in app.markdown)

    app.switch_page("views/attribution.py").run()
    app.selectbox(key="attribution-method").set_value("Saliency").run()
    widget(app.selectbox, "Checkpoint").set_value(DETECTOR_LABEL).run()
    assert not app.exception and not app.error
    target = widget(app.selectbox, "Target box (its score, matched by IoU in every pass)")
    assert len(target.options) == BOXES
    spec = figures(app)["attribution-input"]
    assert "Saliency for box 1:" in spec["layout"]["title"]["text"]
    heatmap = next(trace for trace in spec["data"] if trace["type"] == "heatmap")
    assert array(heatmap["z"]).shape == skimage.data.chelsea().shape[:2], "over the whole image it was given"
    assert np.abs(array(heatmap["z"])).sum() > 0

    widget(app.selectbox, "Checkpoint").set_value(segmenter).run()
    assert not app.exception and not app.error
    target = widget(app.selectbox, "Target class (its logits summed where it is predicted)")
    assert target.value == expected("segmenter").task_prediction.shares[0][0]
    assert "where it is predicted" in figures(app)["attribution-input"]["layout"]["title"]["text"]

    app.switch_page("views/weighting_off.py").run()
    widget(app.selectbox, "Checkpoint").set_value(segmenter).run()
    assert not app.exception and not app.error
    rows = app.table[0].value
    assert list(rows.columns[:2]) == ["switched off", "pixels changed"]
    assert any(column.startswith("IoU ") and "class" not in column for column in rows.columns)
    assert rows.iloc[-1]["switched off"] == "all sites"
    assert len(rows) == 9 + 1  # each of LR-ASPP's 9 gated sites alone, then all

    widget(app.selectbox, "Checkpoint").set_value(DETECTOR_LABEL).run()
    sites = next(m for m in app.multiselect if m.label == "Sites to switch off")
    sites.set_value(sites.value[-1:]).run()
    assert not app.exception and not app.error
    rows = app.table[0].value
    assert list(rows.columns) == ["switched off", "boxes lost", "boxes gained", "boxes moved", "mean score change"]
    assert len(rows) == 2
    lost, gained = int(rows.iloc[0]["boxes lost"]), int(rows.iloc[0]["boxes gained"])
    assert 0 <= lost <= BOXES and lost == gained, "as many boxes come back as go (the detector keeps four)"
    assert any("the mean gate and the attributions site by site need a classifier" in c.value for c in app.caption)


def test_batch_statistics_gate_statistics_and_models_per_task(app):
    segmenter = segmenter_label(app)
    app.switch_page("views/batch.py").run()
    app.checkbox(key="batch-samples").uncheck().run()
    widget(app.selectbox, "Checkpoint").set_value(DETECTOR_LABEL).run()
    assert not app.exception and not app.error
    assert "batch-histogram" in figures(app) and "batch-channels" in figures(app)

    app.switch_page("views/statistics.py").run()
    widget(app.selectbox, "Checkpoint").set_value(segmenter).run()
    assert not app.exception and not app.error
    assert any("is a segmentation model" in i.value and "fmw stats" in i.value for i in app.info)

    app.switch_page("views/models.py").run()
    assert not app.exception and not app.error
    rows = app.table[0].value
    assert list(rows["checkpoint"]) == ["channel", segmenter, DETECTOR_LABEL]
    assert list(rows["weighting"])[1:] == ["torchvision: channel", "torchvision: channel"]
