"""Safe decoding of untrusted image bytes into an 8-bit RGB array: format sniffed from content,
size limits checked from the header before any pixel is decoded, every failure a ``DecodeError``.

Supported: PNG, JPEG, WebP, BMP, TIFF (first page), GIF (first frame). EXIF orientation is
applied; alpha is composited on white; grayscale, 16-bit, palette and CMYK become RGB. Large
photos are shrunk while decoding (JPEG draft mode) to ``working_side`` pixels on the shorter side.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from fmw.errors import DecodeError
from fmw.settings import MAX_SIDE

__all__ = [
    "DEFAULT_WORKING_SIDE",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "SUPPORTED_FORMATS",
    "DecodeError",
    "DecodedImage",
    "decode_image",
    "sniff_format",
]

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
MAX_PIXELS = 64_000_000  # a 48-megapixel phone photo passes, a decompression bomb does not
MAX_FILE_BYTES = 100 * 1024 * 1024
DEFAULT_WORKING_SIDE = 512  # enough for every analysis resolution the dashboard offers (<= 256 px)

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a zip archive"),
    (b"ftypheic", 4, "a HEIC photo (convert it to JPEG first)"),
    (b"ftypheix", 4, "a HEIC photo (convert it to JPEG first)"),
    (b"ftypmif1", 4, "a HEIF image (convert it to JPEG first)"),
    (b"ftypavif", 4, "an AVIF image (convert it to PNG or JPEG first)"),
    (b"<svg", 0, "an SVG drawing (export it as PNG first)"),
    (b"<?xml", 0, "an XML/SVG document (export it as PNG first)"),
    (b"II+\x00", 0, "a BigTIFF file"),
)


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image: 8-bit RGB pixels (H, W, 3), possibly shrunk, plus where it came from."""

    name: str
    rgb: np.ndarray
    source_format: str
    source_size: tuple[int, int]  # (width, height) declared by the file, before orientation
    digest: str  # sha256 of the file's bytes


def sniff_format(data: bytes) -> str | None:
    """The supported format whose signature ``data`` starts with, else None."""
    for signature, offset, name in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unsupported(data: bytes) -> str:
    for signature, offset, what in _UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(signature)].lower() == signature.lower():
            return f"it is {what}"
    return f"its first bytes {data[:8]!r} match none of them"


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale (modes I;16*, I, F) to 8-bit RGB, keeping the full range."""
    values = np.asarray(image, dtype=np.float64)
    top = (1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0) if image.mode == "F" else 65535.0
    gray = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        return _composite_on_white(image)
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    return image.convert("RGB")


def _shrunk_size(width: int, height: int, working_side: int) -> tuple[int, int]:
    shorter = min(width, height)
    if shorter <= working_side:
        return width, height
    scale = working_side / shorter
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(
    data: bytes,
    name: str = "image",
    *,
    working_side: int | None = DEFAULT_WORKING_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> DecodedImage:
    """Decode ``data`` (the bytes of an uploaded file called ``name``) to RGB.

    The shorter side is reduced to ``working_side`` pixels when larger (None keeps full size).
    Raises ``DecodeError`` for unsupported formats, damaged files and images whose declared size
    exceeds ``max_pixels`` or ``MAX_SIDE`` per side, the latter before decoding any pixel.
    """
    if not data:
        raise DecodeError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise DecodeError(f"{name}: {len(data) / 2**20:.0f} MB is more than the {MAX_FILE_BYTES // 2**20} MB limit")
    source_format = sniff_format(data)
    if source_format is None:
        raise DecodeError(
            f"{name}: not a supported image; expected {', '.join(SUPPORTED_FORMATS)} and {_describe_unsupported(data)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=[source_format])
            width, height = image.size
            if width < 1 or height < 1:
                raise DecodeError(f"{name}: the {source_format} header declares an empty image ({width}x{height})")
            if max(width, height) > MAX_SIDE or width * height > max_pixels:
                raise DecodeError(
                    f"{name}: the {source_format} header declares {width}x{height} pixels "
                    f"({width * height / 1e6:.0f} megapixels); the limit is {max_pixels / 1e6:.0f} megapixels "
                    f"and {MAX_SIDE} pixels per side. Resize the image and upload it again."
                )
            if working_side is not None and source_format == "JPEG":
                image.draft("RGB", _shrunk_size(width, height, working_side))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
            if working_side is not None:
                target = _shrunk_size(*image.size, working_side)
                if target != image.size:
                    image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
            rgb = np.asarray(image, dtype=np.uint8)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(f"{name}: refused as a decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError) as error:
        reason = str(error).strip() or type(error).__name__
        raise DecodeError(f"{name}: the {source_format} data is damaged or truncated ({reason[:200]})") from None
    except MemoryError:
        raise DecodeError(f"{name}: not enough memory to decode this image; upload a smaller one") from None
    return DecodedImage(
        name=name,
        rgb=rgb,
        source_format=source_format,
        source_size=(width, height),
        digest=hashlib.sha256(data).hexdigest(),
    )
