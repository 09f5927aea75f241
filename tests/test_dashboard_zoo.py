"""AppTest of the dashboard's issue-6 parts: torchvision models added from the sidebar (random weights,
and ImageNet weights offline), timm models, uploaded state dicts (good, mismatched, malicious) and fmw
checkpoints (good, garbage), kept per session, and Compare across model families."""

from __future__ import annotations

import io
import pickle

import pytest
import skimage.data
import torch
from torchvision.models import mobilenet_v3_small

from fmw.analysis import analyse_image
from fmw.models import load_state_dict_upload, timm_available
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, TIMEOUT, array, figures, restore_threads, widget  # noqa: F401

MOBILENET = "mobilenet_v3_small (random weights)"
MOBILENET_SITES = 9


@pytest.fixture
def checkpoints(tmp_path, monkeypatch, restore_threads):  # noqa: F811
    directory = tmp_path / "checkpoints"
    make_checkpoint(directory / "channel.safetensors", "channel", seed=5)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(directory))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty torch cache: no ImageNet weights
    monkeypatch.delenv("FMW_ALLOW_DOWNLOAD", raising=False)
    return directory


@pytest.fixture
def app(checkpoints):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.select_slider(key="resolution").set_value(64).run()  # small inputs keep torchvision models fast
    assert not at.exception
    return at


def add_torchvision(at, weights: str, architecture: str = "mobilenet_v3_small"):
    at.selectbox(key="zoo-architecture").set_value(architecture)
    at.radio(key="zoo-weights").set_value(weights)
    at.button(key="zoo-add").click().run()
    assert not at.exception
    return at


def upload_models(at, files: list[tuple[str, bytes]], architecture: str = "mobilenet_v3_small"):
    at.selectbox(key="upload-architecture").set_value(architecture)
    at.file_uploader(key="model-uploads").set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception
    return at


def saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def mobilenet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return mobilenet_v3_small(weights=None).state_dict()


def compare_columns(at) -> list[str]:
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**")]


def test_random_weights_mobilenet_is_compared_by_relative_depth(app):
    add_torchvision(app, "random weights")
    assert app.multiselect(key="checkpoints").values == ["channel", MOBILENET]
    assert not app.error
    assert compare_columns(app) == ["channel", MOBILENET]
    specs = figures(app)
    spec = specs[f"compare-{MOBILENET}"]
    assert "(random weights)" in spec["layout"]["title"]["text"]
    assert "features.1.block.1" in spec["layout"]["title"]["text"]
    captions = [c.value for c in app.caption if "input " in c.value]
    assert captions[1].startswith(f"`features.1.block.1` (site 1 of {MOBILENET_SITES}) · channel · 16 maps of 16×16")
    assert captions[1].endswith("input 64×64 px")
    tables = [m.value for m in app.markdown if m.value.startswith("| class | p |")]
    assert len(tables[1].splitlines()) == 2 + 5
    assert app.select_slider(key="compare-depth").options == [f"site {d} of {MOBILENET_SITES}" for d in range(1, 10)]

    app.select_slider(key="compare-depth").set_value(MOBILENET_SITES - 1).run()
    captions = [c.value for c in app.caption if "input " in c.value]
    assert captions[0].startswith("`stages.2.weighting` (site 3 of 3)"), "the fmw model shows its deepest site"
    assert captions[1].startswith("`features.11.block.2` (site 9 of 9) · channel · 576 maps of 2×2")
    assert array(figures(app)[f"compare-{MOBILENET}"]["data"][2]["y"]).shape == (576,)
    app.radio(key="compare-ranges").set_value("per column").run()
    specs = figures(app)
    limits = {specs[key]["layout"]["coloraxis"]["cmax"] for key in ("compare-channel", f"compare-{MOBILENET}")}
    assert len(limits) == 2, "each column on its own colour range"

    for page, key in (("views/explorer.py", "explorer-grids"), ("views/attribution.py", "attribution-input")):
        app.switch_page(page).run()
        widget(app.selectbox, "Checkpoint").set_value(MOBILENET).run()
        assert not app.exception and not app.error
        assert "(random weights)" in figures(app)[key]["layout"]["title"]["text"]
    app.switch_page("views/models.py").run()
    rows = app.table[0].value
    assert list(rows["checkpoint"]) == ["channel", MOBILENET]
    assert rows.iloc[1]["weighting"] == "torchvision: channel" and rows.iloc[1]["input"] == "224×224"


def test_imagenet_weights_offline_say_so_and_offer_random_weights(app):
    add_torchvision(app, "ImageNet weights")
    errors = [error.value for error in app.error]
    assert len(errors) == 1
    assert errors[0].startswith("ImageNet weights for mobilenet_v3_small are not in the torch cache")
    assert "random weights" in errors[0]
    assert app.multiselect(key="checkpoints").values == ["channel"], "nothing was added"
    app.button(key="zoo-add-random").click().run()
    assert not app.exception and not app.error
    assert app.multiselect(key="checkpoints").values == ["channel", MOBILENET]


@pytest.mark.skipif(not timm_available(), reason="timm is optional")
def test_timm_model_with_eca_sites(app):
    app.selectbox(key="timm-architecture").set_value("resnet10t-eca")
    app.button(key="timm-add").click().run()
    assert not app.exception and not app.error
    label = "resnet10t-eca (random weights)"
    assert label in app.multiselect(key="checkpoints").values
    caption = next(c.value for c in app.caption if c.value.startswith("`layer1.0.se`"))
    assert " · eca · " in caption


def test_state_dict_uploads_good_mismatched_and_malicious(app, tmp_path):
    good = mobilenet_state()
    mismatched = dict(good)
    del mismatched["classifier.3.bias"]
    mismatched["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    upload_models(app, [("good.pth", saved(good))])
    label = "mobilenet_v3_small (good.pth)"
    assert app.multiselect(key="checkpoints").values == ["channel", label]
    assert compare_columns(app) == ["channel", label]

    malicious = [("evil.pt", pickle.dumps(Payload())), ("evil.pth", saved({"weight": Payload()}))]
    upload_models(app, [("good.pth", saved(good)), ("bad.pth", saved(mismatched)), *malicious])
    errors = [error.value for error in app.error]
    assert len(errors) == 3
    assert errors[0].startswith("bad.pth: this state dict does not fit torchvision's mobilenet_v3_small")
    assert (
        "classifier.3.bias" in errors[0]
        and "features.0.0.weight: file (8, 3, 3, 3) vs model (16, 3, 3, 3)" in errors[0]
    )
    assert errors[1].startswith("evil.pt: refused: not a plain state dict that can be read safely")
    assert errors[2].startswith("evil.pth: refused: not a plain state dict that can be read safely")
    assert not marker.exists(), "the pickle's payload must never run"
    assert app.multiselect(key="checkpoints").values == ["channel", label], "a failed upload removes nothing"
    assert compare_columns(app) == ["channel", label]
    predictions = [m.value for m in app.markdown if m.value.startswith("| class | p |")]
    expected = analyse_image(load_state_dict_upload(saved(good), "mobilenet_v3_small"), skimage.data.chelsea(), 64)
    assert predictions[1].splitlines()[2:] == [
        f"| {p.class_name} | {p.probability:.1%} |" for p in expected.predictions
    ]

    upload_models(app, [("good.pth", saved(good))], architecture="efficientnet_b0")
    assert app.error[0].value.startswith("good.pth: this state dict does not fit torchvision's efficientnet_b0")
    assert app.multiselect(key="checkpoints").values == ["channel"]


def test_uploaded_fmw_checkpoint_works_and_stays_in_its_session(app, checkpoints, tmp_path):
    from streamlit.testing.v1 import AppTest

    mine = make_checkpoint(tmp_path / "mine.safetensors", "cbam", seed=9).read_bytes()
    upload_models(app, [("mine.safetensors", mine), ("junk.safetensors", b"\x00" * 64)])
    assert [error.value.split(":")[0] for error in app.error] == ["junk.safetensors"]
    assert app.multiselect(key="checkpoints").values == ["channel", "mine (uploaded)"]
    assert compare_columns(app) == ["channel", "mine (uploaded)"]
    spatial = figures(app)["compare-mine (uploaded)"]["data"][3]
    assert array(spatial["z"]).shape == (31, 31)  # CBAM's spatial gate at 64 px

    other = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not other.exception
    assert other.multiselect(key="checkpoints").options == ["channel"], "another session never sees the upload"
