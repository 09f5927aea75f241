"""Tests of checkpoints: a bit-exact round trip for every weighting kind with its metadata, and
the refusal, each with its message, of pickles (without running them), garbage, empty and
truncated files, tensors that do not fit the declared architecture, and bad metadata."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes

import fmw
from fmw.errors import CheckpointError
from fmw.io import CIFAR10_CLASSES, CheckpointMetadata, load_checkpoint, save_checkpoint
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import FMWNet, NetConfig, build_model, load_pickled_state_dict
from fmw.sites import probe

CLASSES = CIFAR10_CLASSES
SMALL: dict[str, Any] = {"stem_width": 8, "widths": (8, 16, 32)}  # NetConfig overrides


def trained_looking_model(kind: str, seed: int = 0, **config: Any) -> FMWNet:
    """A model whose parameters and BatchNorm statistics are all non-default (seeded)."""
    torch.manual_seed(seed)
    model = build_model(weighting=kind, **config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
        model.train()(torch.randn(4, 3, 16, 16))  # moves running means, variances, batch counts
    return model.eval()


def metadata_for(config: NetConfig, **fields) -> CheckpointMetadata:
    return CheckpointMetadata(architecture=config, class_names=CLASSES[: config.num_classes], **fields)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> Path:
    path.write_bytes(save_safetensors_bytes(tensors, metadata=metadata))
    return path


def refusal(source, *words: str) -> str:
    """Load ``source``, expect a CheckpointError containing every word, return the message."""
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(source)
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", list(WEIGHTING_LAYERS))
def test_round_trip_is_bit_exact(kind: str, tmp_path: Path) -> None:
    model = trained_looking_model(kind, **SMALL)
    path = save_checkpoint(tmp_path / f"{kind}.safetensors", model, metadata_for(model.config))
    loaded = load_checkpoint(path)

    assert loaded.model.config == model.config
    assert not loaded.model.training
    original, restored = model.state_dict(), loaded.model.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert restored[key].dtype == original[key].dtype, key
        assert torch.equal(restored[key], original[key]), key
    assert original["stages.0.norm1.num_batches_tracked"].item() == 1

    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    before, after = probe(model, x), probe(loaded.model, x)
    assert torch.equal(before.logits, after.logits)
    assert before.names == after.names
    for a, b in zip(before.sites, after.sites):
        assert torch.equal(a.after, b.after)
        assert all(torch.equal(a.gates[stage], b.gates[stage]) for stage in a.gates)


def test_metadata_round_trips(tmp_path: Path) -> None:
    config = NetConfig(weighting="cbam", num_classes=3, **SMALL)
    metadata = CheckpointMetadata(
        architecture=config,
        class_names=["cat", "dog", "ship"],
        mean=(0.5, 0.25, 0.125),
        std=(0.2, 0.3, 0.4),
        input_size=(48, 64),
        metrics={"top1": 0.8125, "per_class": {"cat": 0.75}},
        recipe={"epochs": 12, "lr": 0.05, "augment": ["crop", "flip"]},
        code_version="0.1.0+abc1234",
    )
    path = save_checkpoint(tmp_path / "cbam.safetensors", build_model(config), metadata)
    loaded = load_checkpoint(path.read_bytes(), name="upload.safetensors")
    assert loaded.metadata == metadata
    assert loaded.metadata.weighting == "cbam"
    assert loaded.source == "upload.safetensors"


def test_code_version_is_filled_in_when_saving(tmp_path: Path) -> None:
    model = build_model(**SMALL)
    path = save_checkpoint(tmp_path / "none.safetensors", model, metadata_for(model.config))
    assert load_checkpoint(path).metadata.code_version.startswith(fmw.__version__)


def test_save_refuses_metadata_of_another_architecture(tmp_path: Path) -> None:
    model = build_model(**SMALL)
    with pytest.raises(ValueError, match="differs from the model's config"):
        save_checkpoint(tmp_path / "x.safetensors", model, metadata_for(NetConfig(weighting="eca", **SMALL)))


def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path: Path) -> None:
    # a safetensors file begins with its header length (little endian); 0x80 is also the first
    # byte of a pickle, and such checkpoints (about 1 in 256) were once refused as pickles
    model = build_model(**SMALL)
    for padding in range(0, 512, 8):
        metadata = metadata_for(model.config, recipe={"note": "x" * padding}, code_version="0.1.0")
        path = save_checkpoint(tmp_path / "x.safetensors", model, metadata)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length whose low byte is 0x80")
    assert load_checkpoint(path).metadata.recipe == {"note": "x" * padding}


def test_factory_checkpoints_load(checkpoint_factory) -> None:
    loaded = load_checkpoint(checkpoint_factory("eca", **SMALL))
    assert loaded.metadata.class_names == CLASSES
    assert loaded.metadata.recipe == {"seed": 0}


# ---------------------------------------------------------------- pickles


class CreatesFileWhenUnpickled:
    """Unpickling this object opens (and so creates) ``target``: a stand-in for arbitrary code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def test_the_malicious_payload_really_creates_a_file(tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(CreatesFileWhenUnpickled(control))).close()
    assert control.exists(), "the payload used by the refusal tests must be live"


def test_a_pickle_is_refused_without_being_run(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weight": CreatesFileWhenUnpickled(target)}))
    message = refusal(path, "Python pickle", "never unpickles", "arbitrary code", "save_checkpoint")
    assert str(path) in message
    assert not target.exists()


def test_a_torch_save_zip_is_refused_without_being_run(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "extra": CreatesFileWhenUnpickled(target)}, path)
    assert path.read_bytes()[:2] == b"PK"
    refusal(path, "zip archive", "torch.save", "never unpickles")
    assert not target.exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["torch.save zip", "raw pickle"])
def test_weights_only_loading_refuses_the_payload(zipped: bool, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    payload = {"weight": torch.ones(2), "extra": CreatesFileWhenUnpickled(target)}
    if zipped:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
    else:
        data = pickle.dumps(payload, protocol=2)
    with pytest.raises(CheckpointError, match="refused: not a plain state dict") as error:
        load_pickled_state_dict(data, source="upload.pt")
    assert str(error.value).startswith("upload.pt: ")
    assert not target.exists()


def test_weights_only_loading_reads_a_plain_state_dict() -> None:
    model = trained_looking_model("scale", **SMALL)
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict()}, buffer)
    loaded = load_pickled_state_dict(buffer.getvalue())
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[key], value) for key, value in model.state_dict().items())
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_pickled_state_dict(b"")
    buffer = io.BytesIO()
    torch.save([torch.ones(1)], buffer)
    with pytest.raises(CheckpointError, match="expected a dict of parameter names to tensors"):
        load_pickled_state_dict(buffer.getvalue())


# ---------------------------------------------------------------- files that are not checkpoints


def test_garbage_bytes_are_refused(tmp_path: Path) -> None:
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    path = tmp_path / "noise.safetensors"
    path.write_bytes(b"\x13" + bytes(noise.tolist()))
    refusal(path, "not a valid safetensors file", "truncated or not a checkpoint")
    path.write_bytes(b"hello world, this is some text")
    refusal(path, "not a valid safetensors file", "declared header of")
    path.write_bytes((10).to_bytes(8, "little") + b"0123456789")
    refusal(path, "no JSON header")
    path.write_bytes((10).to_bytes(8, "little") + b"{broken!!}")
    refusal(path, "header is not valid JSON")


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    refusal(path, "the file is empty")
    refusal(b"", "uploaded checkpoint", "the file is empty")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    refusal(tmp_path / "absent.safetensors", "absent.safetensors", "no such file")


def test_a_truncated_file_is_refused(checkpoint_factory) -> None:
    data = checkpoint_factory("channel", **SMALL).read_bytes()
    refusal(data[: len(data) // 2], "inconsistent", "damaged")
    refusal(data[:100], "truncated or not a checkpoint")
    refusal(data[:5], "5 bytes is too short")


# ---------------------------------------------------------------- tensors that do not fit


def test_tensors_of_other_widths_are_refused_naming_the_first_mismatches(tmp_path: Path) -> None:
    tensors = build_model(widths=(48, 96, 192)).state_dict()
    claimed = metadata_for(NetConfig(widths=(32, 64, 128)))
    path = write_safetensors(tmp_path / "liar.safetensors", tensors, claimed.to_strings())
    message = refusal(path, "do not fit the declared architecture", "widths [32, 64, 128]", "shape mismatches")
    assert "stages.0.conv1.weight: file (48, 24, 3, 3) vs model (32, 24, 3, 3)" in message
    assert "stages.0.norm1.weight: file (48,) vs model (32,)" in message
    assert "more)" in message, "long lists are cut, saying how many more"
    assert "stem.0.weight" not in message, "tensors that fit are not listed"


def test_tensors_of_another_weighting_are_refused_naming_the_keys(tmp_path: Path) -> None:
    tensors = build_model(weighting="eca", **SMALL).state_dict()
    claimed = metadata_for(NetConfig(weighting="none", **SMALL))
    path = write_safetensors(tmp_path / "eca-as-none.safetensors", tensors, claimed.to_strings())
    refusal(path, "3 unexpected keys", "stages.0.weighting.conv.weight")
    del tensors["classifier.weight"]
    claimed = metadata_for(NetConfig(weighting="eca", **SMALL))
    path = write_safetensors(tmp_path / "headless.safetensors", tensors, claimed.to_strings())
    refusal(path, "1 missing keys", "classifier.weight")


# ---------------------------------------------------------------- metadata


@pytest.fixture
def valid_parts() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    model = build_model(**SMALL)
    return model.state_dict(), metadata_for(model.config).to_strings()


def test_a_bare_safetensors_file_is_refused(tmp_path: Path, valid_parts) -> None:
    tensors, _ = valid_parts
    path = write_safetensors(tmp_path / "bare.safetensors", tensors, None)
    refusal(path, "no fmw metadata", "bare safetensors", "save_checkpoint")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"format": "something-else"}, ["'something-else'", "not written by fmw"]),
        ({"class_names": "[cat, dog"}, ["'class_names' is not valid JSON"]),
        ({"class_names": json.dumps(CLASSES[:5])}, ["5 class names for a model with 10 outputs"]),
        ({"class_names": json.dumps(list(range(10)))}, ["class_names must be a list of strings"]),
        ({"architecture": "{"}, ["'architecture' is not valid JSON"]),
        ({"architecture": '{"weighting": "none", "depth": 4}'}, ["unknown architecture config keys", "depth"]),
        ({"weighting": "cbam"}, ["weighting 'cbam'", "architecture says 'none'", "inconsistent"]),
        ({"format_version": "2"}, ["format version 2 is newer", "upgrade fmw"]),
        ({"format_version": "one"}, ["format_version 'one' is not an integer"]),
        ({"normalization": json.dumps({"mean": [0.5]})}, ["normalization must be"]),
        ({"normalization": json.dumps({"mean": [0.5] * 3, "std": [0.1, 0.0, 0.1]})}, ["positive stds"]),
        ({"input_size": json.dumps([32])}, ["input_size must be [height, width]"]),
    ],
)
def test_malformed_metadata_is_refused(change: dict, words: list[str], tmp_path: Path, valid_parts) -> None:
    tensors, strings = valid_parts
    path = write_safetensors(tmp_path / "bad.safetensors", tensors, {**strings, **change})
    refusal(path, *words)


def test_missing_metadata_keys_are_named(tmp_path: Path, valid_parts) -> None:
    tensors, strings = valid_parts
    del strings["class_names"], strings["input_size"]
    path = write_safetensors(tmp_path / "partial.safetensors", tensors, strings)
    refusal(path, "metadata lacks class_names, input_size")
