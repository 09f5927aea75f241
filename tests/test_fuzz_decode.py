"""Fuzz test of fmw.io.decode with hypothesis: small valid PNG/JPEG/WebP/GIF/BMP/TIFF files with bytes
flipped, inserted, deleted, overwritten or cut, and headers declaring huge sizes in every format.

Only ``DecodeError`` may come out; each decode is bounded in time and in peak memory.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fmw.errors import DecodeError
from fmw.io import decode_image
from fmw.io.decode import MAX_PIXELS, MAX_SIDE
from tests.bounds import peak_memory_growth, record_pixel_loads, time_limit

FUZZ_MAX_PIXELS = 4_000_000  # fuzzed headers may declare up to this; the default limit is tested below
SECONDS_PER_DECODE = 5.0
BYTES_PER_DECLARED_PIXEL = 32  # a few full-size copies (RGBA, RGB, array) of what the header declares
MEMORY_SLACK = 48 * 2**20
REFUSAL_MEMORY = 16 * 2**20  # what refusing a huge header may cost: no pixel buffer at all
SIGNATURE_BYTES = 12
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def picture(width: int = 24, height: int = 16) -> Image.Image:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 10, y * 15, rng.integers(0, 256, (height, width))], axis=2)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


SEEDS: dict[str, bytes] = {
    "png": encode(picture(), "PNG"),
    "png-rgba": encode(picture().convert("RGBA"), "PNG"),
    "png-16bit": encode(Image.fromarray(np.arange(384, dtype=np.uint16).reshape(16, 24) * 170), "PNG"),
    "jpeg": encode(picture(), "JPEG", quality=80),
    "jpeg-progressive": encode(picture(), "JPEG", quality=80, progressive=True),
    "webp-lossy": encode(picture(), "WEBP", quality=80),
    "webp-lossless": encode(picture(), "WEBP", lossless=True),
    "gif": encode(picture().convert("P"), "GIF"),
    "bmp": encode(picture(), "BMP"),
    "tiff": encode(picture(), "TIFF"),
    "tiff-deflate": encode(picture(), "TIFF", compression="tiff_adobe_deflate"),
}


def declared_pixels(data: bytes) -> int:
    """The pixel count the header declares, as PIL reads it without decoding; 0 when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:
        return 0
    return width * height


def decode_within_bounds(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[str, int]:
    """Decode ``data``; returns "decoded" or "refused" and the peak memory growth. Any exception
    other than DecodeError (including overrunning the time limit) propagates and fails the test."""
    with peak_memory_growth() as growth, time_limit(SECONDS_PER_DECODE):
        try:
            decoded = decode_image(data, "fuzzed.bin", max_pixels=max_pixels)
        except DecodeError as error:
            outcome, message = "refused", str(error)
        else:
            assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3
            outcome, message = "decoded", ""
    assert outcome == "decoded" or message.startswith("fuzzed.bin: "), message
    return outcome, growth[0]


@st.composite
def mutated(draw) -> bytes:
    """A seed file with one to four byte-level mutations past its signature (a broken signature
    is refused before any decoder runs; the test below covers it)."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        operation = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        at = draw(st.integers(min(SIGNATURE_BYTES, len(data) - 1), len(data) - 1))
        if operation == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif operation == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif operation == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(data=mutated())
def test_mutated_images_give_pixels_or_a_decode_error_within_bounds(data: bytes) -> None:
    _, growth = decode_within_bounds(data, max_pixels=FUZZ_MAX_PIXELS)
    budget = BYTES_PER_DECLARED_PIXEL * min(declared_pixels(data), FUZZ_MAX_PIXELS) + MEMORY_SLACK
    assert growth <= budget, f"peak memory rose {growth / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB"


@FUZZ
@given(data=st.binary(min_size=0, max_size=256), prefix=st.sampled_from(sorted(SEEDS)))
def test_a_valid_signature_followed_by_noise_is_refused(data: bytes, prefix: str) -> None:
    outcome, growth = decode_within_bounds(SEEDS[prefix][:SIGNATURE_BYTES] + data, max_pixels=FUZZ_MAX_PIXELS)
    assert growth <= BYTES_PER_DECLARED_PIXEL * FUZZ_MAX_PIXELS + MEMORY_SLACK
    if outcome == "decoded":
        assert declared_pixels(SEEDS[prefix][:SIGNATURE_BYTES] + data) > 0


def test_every_seed_decodes_to_its_size() -> None:
    for name, data in SEEDS.items():
        outcome, _ = decode_within_bounds(data)
        assert outcome == "decoded", name
        assert decode_image(data, name).rgb.shape == (16, 24, 3), name


def patched(data: bytes, offset: int, layout: str, *values: int) -> bytes:
    return data[:offset] + struct.pack(layout, *values) + data[offset + struct.calcsize(layout) :]


def jpeg_declaring(width: int, height: int) -> bytes:
    data = SEEDS["jpeg"]
    sof = data.index(b"\xff\xc0")  # baseline start of frame: length(2) precision(1) height(2) width(2)
    return patched(data, sof + 5, ">HH", height, width)


def gif_declaring(width: int, height: int) -> bytes:
    data = patched(SEEDS["gif"], 6, "<HH", width, height)  # logical screen
    descriptor = data.index(b"\x2c", 13 + 3 * 256 if data[10] & 0x80 else 13)
    return patched(data, descriptor + 5, "<HH", width, height)  # first frame


def bmp_declaring(width: int, height: int) -> bytes:
    return patched(SEEDS["bmp"], 18, "<ii", width, height)


def tiff_declaring(width: int, height: int) -> bytes:
    data = SEEDS["tiff"]
    (directory,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, directory)
    for entry in range(entries):
        at = directory + 2 + 12 * entry
        tag, _kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength, rewritten as LONG values
            data = patched(data, at + 2, "<HII", 4, 1, width if tag == 256 else height)
    return data


def webp_declaring(width: int, height: int) -> bytes:
    data = SEEDS["webp-lossy"]
    frame = data.index(b"\x9d\x01\x2a")  # VP8 key-frame start code, then 14-bit width and height
    return patched(data, frame + 3, "<HH", width & 0x3FFF, height & 0x3FFF)


HUGE_HEADERS = [
    ("jpeg", jpeg_declaring, 65_000, 65_000),
    ("jpeg", jpeg_declaring, 9_000, 9_000),
    ("gif", gif_declaring, 65_535, 65_535),
    ("bmp", bmp_declaring, 100_000, 100_000),
    ("bmp", bmp_declaring, 20_000, -20_000),
    ("tiff", tiff_declaring, 2**31, 2**31),
    ("tiff", tiff_declaring, 10_000, 10_000),
    ("webp", webp_declaring, 16_383, 16_383),
]


@pytest.mark.parametrize(
    ("fmt", "craft", "width", "height"), HUGE_HEADERS, ids=[f"{f}-{w}x{h}" for f, _, w, h in HUGE_HEADERS]
)
def test_headers_declaring_huge_images_are_refused_without_allocating(fmt, craft, width, height, monkeypatch) -> None:
    assert abs(width * height) > MAX_PIXELS or max(abs(width), abs(height)) > MAX_SIDE
    data = craft(width, height)
    loads = record_pixel_loads(monkeypatch)
    outcome, growth = decode_within_bounds(data)
    assert outcome == "refused"
    assert growth <= REFUSAL_MEMORY, f"{fmt}: refusing cost {growth / 2**20:.0f} MiB"
    assert loads == [], f"{fmt}: refused from the header, yet PIL started decoding pixels"
