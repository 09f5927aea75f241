"""Tests of fmw.io.decode: every supported format and colour mode becomes the expected RGB pixels,
and hostile or broken bytes become a DecodeError naming the file, never anything else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from fmw.errors import DecodeError
from fmw.io import decode_image, sniff_format
from fmw.io.decode import MAX_PIXELS
from tests.bounds import record_pixel_loads


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 128)], axis=2).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(fmt):
    pixels = gradient()
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(Image.fromarray(pixels), fmt, **options), f"picture.{fmt.lower()}")
    assert decoded.source_format == fmt
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (30, 40, 3)
    np.testing.assert_array_equal(decoded.rgb, pixels)


def test_jpeg_is_close_and_format_is_sniffed_from_content_not_extension():
    pixels = gradient()
    decoded = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95), "looks_like.png")
    assert decoded.source_format == "JPEG"
    assert np.abs(decoded.rgb.astype(int) - pixels).mean() < 3


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(data, "anim.gif")
    assert tuple(decoded.rgb[4, 4]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif, quality=95), "phone.jpg")
    assert decoded.rgb.shape == (20, 10, 3)
    assert decoded.rgb[:8].mean() > 200 and decoded.rgb[12:].mean() < 50  # white half now on top


def test_rgba_and_la_are_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :2, 3] = 255  # left half opaque red, right half transparent
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "alpha.png")
    assert tuple(decoded.rgb[0, 0]) == (255, 0, 0)
    assert tuple(decoded.rgb[0, 3]) == (255, 255, 255)
    la = Image.fromarray(np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 0, np.uint8)], 2), "LA")
    assert tuple(decode_image(encode(la, "PNG"), "la.png").rgb[1, 1]) == (255, 255, 255)


def test_grayscale_sixteen_bit_palette_and_cmyk_become_rgb():
    gray = decode_image(encode(Image.new("L", (3, 3), 77), "PNG"), "gray.png")
    assert tuple(gray.rgb[0, 0]) == (77, 77, 77)
    sixteen = Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16))
    assert sixteen.mode.startswith("I;16")
    half = decode_image(encode(sixteen, "PNG"), "deep.png")
    assert tuple(half.rgb[1, 1]) == (127, 127, 127)
    palette = Image.new("RGB", (3, 3), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(decode_image(encode(palette, "PNG"), "palette.png").rgb[2, 2]) == (10, 200, 30)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    for fmt in ("JPEG", "TIFF"):
        red = decode_image(encode(cmyk, fmt), f"print.{fmt.lower()}").rgb[1, 1].astype(int)
        assert red[0] > 230 and red[1] < 25 and red[2] < 25, (fmt, red)


def test_large_photo_is_shrunk_to_the_working_side_while_decoding(monkeypatch):
    big = Image.fromarray(gradient(4000, 3000))
    data = encode(big, "JPEG", quality=90)
    drafts = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(image, mode, size):
        result = original_draft(image, mode, size)
        drafts.append(image.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    decoded = decode_image(data, "phone.jpg", working_side=512)
    assert decoded.source_size == (4000, 3000)
    assert decoded.rgb.shape == (512, 683, 3)
    assert drafts and max(drafts[-1]) <= 2 * 683, f"JPEG draft mode should decode at reduced size, got {drafts}"
    full = decode_image(encode(Image.fromarray(gradient(600, 400)), "PNG"), "full.png", working_side=None)
    assert full.rgb.shape == (400, 600, 3)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (the pixel data is missing)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (100_000, 10), (9_000, 8_000)])
def test_absurd_sizes_are_refused_from_the_header(width, height, monkeypatch):
    assert width * height > MAX_PIXELS or max(width, height) > 30_000
    loads = record_pixel_loads(monkeypatch)
    with pytest.raises(DecodeError, match=rf"^bomb\.png: .*({width}x{height}|decompression bomb)"):
        decode_image(png_declaring(width, height), "bomb.png")
    assert loads == [], "refused from the header: no pixel may be decoded"


def test_real_decompression_bomb_is_refused_before_decoding(monkeypatch):
    bomb = encode(Image.new("L", (9000, 9000)), "PNG", optimize=True)  # 81 MP of zeros, a few kB compressed
    assert len(bomb) < 200_000
    loads = record_pixel_loads(monkeypatch)
    with pytest.raises(DecodeError, match="megapixels"):
        decode_image(bomb, "zeros.png")
    assert loads == [], "refused from the header: no pixel may be decoded"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, world", "not a supported image"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, "HEIC"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    ],
)
def test_unsupported_content_is_named(data, reason):
    with pytest.raises(DecodeError, match=rf"^upload\.jpg: .*{reason}"):
        decode_image(data, "upload.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_files_raise_decode_error(fmt):
    data = encode(Image.fromarray(gradient(64, 48)), fmt)
    with pytest.raises(DecodeError, match=r"^cut\.bin: "):
        decode_image(data[: len(data) // 3], "cut.bin", working_side=None)


def test_sniffing_and_digest():
    png = encode(Image.new("RGB", (2, 2)), "PNG")
    assert sniff_format(png) == "PNG"
    assert sniff_format(encode(Image.new("RGB", (2, 2)), "WEBP")) == "WEBP"
    assert sniff_format(b"garbage") is None
    first, second = decode_image(png, "a.png"), decode_image(png, "b.png")
    assert first.digest == second.digest and len(first.digest) == 64
