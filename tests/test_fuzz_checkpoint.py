"""Fuzz test of checkpoint loading with hypothesis: safetensors headers edited as JSON (dtypes, shapes,
offsets, keys, metadata), header bytes flipped, files truncated, tensor bytes overwritten.

Only ``CheckpointError`` may come out; each load is bounded in time and in peak memory.
"""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmw.analysis import analyse_image
from fmw.errors import CheckpointError
from fmw.io import load_checkpoint
from fmw.models.metadata import MAX_STAGES
from tests.bounds import peak_memory_growth, time_limit
from tests.conftest import make_checkpoint

SECONDS_PER_LOAD = 5.0
MEMORY_PER_LOAD = 64 * 2**20  # the valid file is ~40 kB; nothing a header declares may cost more
FUZZ = settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
DTYPES = [
    "F32",
    "F16",
    "BF16",
    "F64",
    "F8_E4M3",
    "F8_E5M2",
    "F8_E8M0",
    "F4",
    "I64",
    "I32",
    "I8",
    "U8",
    "U64",
    "BOOL",
    "C64",
    "f32",
    "F33",
    "",
    "F32 ",
    "\udcff",
]
HUGE = [2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1, 2**64, -1, -(2**63)]
METADATA_KEYS = [
    "format",
    "format_version",
    "architecture",
    "weighting",
    "class_names",
    "normalization",
    "input_size",
    "metrics",
    "recipe",
    "code_version",
]
ARCHITECTURE_FIELDS = ["weighting", "num_classes", "in_channels", "stem_width", "widths", "logit_scale", "family"]


def split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + body


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "cbam.safetensors"
    return make_checkpoint(path, "cbam", seed=3, stem_width=4, widths=(4, 8)).read_bytes()


integers = st.one_of(st.integers(-4, 64), st.sampled_from(HUGE))
json_values = st.recursive(
    st.none() | st.booleans() | integers | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


TENSOR_EDITS = ("dtype", "shape", "offsets", "entry", "remove", "rename", "duplicate-offsets")
METADATA_EDITS = ("metadata", "architecture", "nested")


@st.composite
def header_edits(draw, header: dict, edits: tuple[str, ...]) -> dict:
    """One to three JSON-level edits of a valid header, each of one of the kinds ``edits``."""
    header = copy.deepcopy(header)
    tensors = sorted(key for key in header if key != "__metadata__")
    metadata = header["__metadata__"]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(tensors))
        if not isinstance(header.get(key), dict):  # an earlier edit replaced or removed the entry
            header[key] = {}
        edit = draw(st.sampled_from(edits))
        if edit == "dtype":
            header[key]["dtype"] = draw(st.sampled_from(DTYPES) | json_values)
        elif edit == "shape":
            header[key]["shape"] = draw(st.lists(integers, max_size=5) | json_values)
        elif edit == "offsets":
            header[key]["data_offsets"] = draw(st.lists(integers, min_size=0, max_size=3) | json_values)
        elif edit == "entry":
            header[key] = draw(json_values)
        elif edit == "remove":
            header.pop(key, None)
        elif edit == "rename":
            header[draw(st.text(min_size=1, max_size=12))] = header.pop(key, {})
        elif edit == "duplicate-offsets":  # two tensors over the same bytes
            other = draw(st.sampled_from(tensors))
            if isinstance(header.get(other), dict):
                header[key]["data_offsets"] = header[other].get("data_offsets")
        elif edit == "metadata":
            field = draw(st.sampled_from(METADATA_KEYS))
            choice = draw(st.sampled_from(["json", "text", "remove", "non-string"]))
            if choice == "remove":
                metadata.pop(field, None)
            elif choice == "non-string":
                metadata[field] = draw(json_values)
            else:
                metadata[field] = json.dumps(draw(json_values)) if choice == "json" else draw(st.text(max_size=20))
        elif edit == "architecture":
            try:
                architecture = json.loads(metadata["architecture"])
            except (KeyError, TypeError, ValueError, RecursionError):  # an earlier edit broke it
                architecture = {}
            if not isinstance(architecture, dict):
                architecture = {}
            field = draw(st.sampled_from(ARCHITECTURE_FIELDS))
            sizes = st.sampled_from(HUGE) | st.integers(1, 2**64)
            architecture[field] = draw(
                st.lists(sizes, min_size=1, max_size=MAX_STAGES + 4) | sizes | integers | json_values
            )
            metadata["architecture"] = json.dumps(architecture)
        else:
            depth = draw(st.integers(1_000, 200_000))
            metadata[draw(st.sampled_from(METADATA_KEYS))] = "[" * depth + "]" * depth
    return header


def load_within_bounds(data: bytes) -> str:
    """Load ``data``; "loaded", or the message of the ``CheckpointError`` that refused it. A loaded
    checkpoint must also analyse an image.
    Any exception other than CheckpointError (a time overrun included) fails the test."""
    with peak_memory_growth() as growth, time_limit(SECONDS_PER_LOAD):
        try:
            loaded = load_checkpoint(data, name="fuzzed.safetensors")
        except CheckpointError as error:
            outcome = str(error)
        else:
            analysis = analyse_image(loaded.handle(), np.full((40, 40, 3), 128, np.uint8))
            assert len(analysis.predictions) == 5
            outcome = "loaded"
    assert outcome == "loaded" or outcome.startswith("fuzzed.safetensors: "), outcome
    assert growth[0] <= MEMORY_PER_LOAD, f"peak memory rose {growth[0] / 2**20:.0f} MiB"
    return outcome


@FUZZ
@given(data=st.data())
def test_edited_tensor_entries_load_or_raise_a_checkpoint_error(valid_file: bytes, data) -> None:
    header, body = split(valid_file)
    load_within_bounds(join(data.draw(header_edits(header, TENSOR_EDITS)), body))


@FUZZ
@given(data=st.data())
def test_edited_metadata_loads_or_raises_a_checkpoint_error(valid_file: bytes, data) -> None:
    header, body = split(valid_file)
    load_within_bounds(join(data.draw(header_edits(header, METADATA_EDITS)), body))


@FUZZ
@given(data=st.data())
def test_damaged_bytes_load_or_raise_a_checkpoint_error(valid_file: bytes, data) -> None:
    damaged = bytearray(valid_file)
    operation = data.draw(st.sampled_from(["truncate", "flip", "overwrite", "length"]))
    at = data.draw(st.integers(0, len(damaged) - 1))
    if operation == "truncate":
        del damaged[at:]
    elif operation == "flip":  # in the header (mostly), a non-UTF-8 byte included
        damaged[at % 2048] ^= data.draw(st.integers(1, 255))
    elif operation == "overwrite":  # tensor bytes: NaN, infinity or anything else
        chunk = data.draw(
            st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f"]) | st.binary(min_size=1, max_size=16)
        )
        damaged[at : at + len(chunk)] = chunk
    else:
        damaged[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    load_within_bounds(bytes(damaged))


def test_the_unedited_file_loads_and_analyses(valid_file: bytes) -> None:
    assert load_within_bounds(valid_file) == "loaded"


CASES = {
    "stages far wider than the file's tensors": ("architecture", {"widths": [100_000, 100_000]}, "do not fit"),
    "more stages than an image can pass": ("architecture", {"widths": [1] * 5000}, "5000 stages"),
    "a width past 64 bits": ("architecture", {"widths": [2**64]}, "cannot be built"),
    "a storage size past 64 bits": ("architecture", {"widths": [2**63 - 1, 5]}, "cannot be built"),
    "an infinite logit scale": ("architecture", {"logit_scale": float("inf")}, "finite number below 2**63"),
    "a logit scale past 64 bits": ("architecture", {"logit_scale": 2**64}, "finite number below 2**63"),
    "a mean past a float": ("normalization", {"mean": [10**400] * 3, "std": [1, 1, 1]}, "normalization must be"),
    "a NaN std": ("normalization", {"mean": [0, 0, 0], "std": [float("nan")] * 3}, "finite positive stds"),
    "a native size of 10^8 px": ("input_size", [10**8, 10**8], "input_size must be"),
    "a version before 1": ("format_version", -5, "start at 1"),
}


@pytest.mark.parametrize(("field", "change", "message"), CASES.values(), ids=list(CASES))
def test_what_the_fuzzer_found_is_refused(valid_file: bytes, field: str, change, message: str) -> None:
    header, body = split(valid_file)
    metadata = header["__metadata__"]
    if field == "architecture":
        metadata[field] = json.dumps({**json.loads(metadata[field]), **change})
    else:
        metadata[field] = json.dumps(change)
    assert message in load_within_bounds(join(header, body))


def test_deeply_nested_json_is_refused(valid_file: bytes) -> None:
    header, body = split(valid_file)
    header["__metadata__"]["architecture"] = "[" * 100_000 + "]" * 100_000
    assert "'architecture' is not valid JSON" in load_within_bounds(join(header, body))
    nested = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "header is not valid JSON" in load_within_bounds(join(nested, body))


def test_nan_weights_are_refused(valid_file: bytes) -> None:
    header, body = split(valid_file)
    key = next(k for k, v in sorted(header.items()) if k != "__metadata__" and v["dtype"] == "F32" and v["shape"])
    start = header[key]["data_offsets"][0]
    damaged = body[:start] + struct.pack("<f", float("nan")) + body[start + 4 :]
    assert f"1 tensors hold NaN or infinite values ({key})" in load_within_bounds(join(header, damaged))
