"""Inspect and decode uploaded images.

The format is detected from the content, never from the file name. Dimensions are read from the
header before any pixel is decoded, and Pillow's decompression-bomb warning is an error.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
SUPPORTED_TEXT = "JPEG, PNG, WEBP, BMP"


class InvalidImage(Exception):
    """The input cannot be processed. ``str(exc)`` is a message for the user; not worth retrying."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024
    max_dimension: int = 4096
    min_dimension: int = 50


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    byte_size: int


def _mb(n: float) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


def check_size(byte_size: int, limits: Limits) -> None:
    if byte_size == 0:
        raise InvalidImage("The uploaded file is empty")
    if byte_size > limits.max_bytes:
        raise InvalidImage(
            f"File size ({byte_size / (1024 * 1024):.1f}MB) exceeds maximum "
            f"({_mb(limits.max_bytes)}MB)"
        )


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("Image dimensions too large (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidImage(
            f"File is not a valid image. Supported formats: {SUPPORTED_TEXT}"
        ) from None


def inspect(data: bytes, limits: Limits) -> ImageInfo:
    """Check size, format and dimensions from the header; no full decode."""
    check_size(len(data), limits)
    image = _open(data)
    fmt = (image.format or "").upper()
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImage(
            f"Unsupported image format: {fmt or 'unknown'}. Supported formats: {SUPPORTED_TEXT}",
            status_code=400,
        )
    width, height = image.size
    if width > limits.max_dimension or height > limits.max_dimension:
        raise InvalidImage(
            f"Image dimensions too large (max {limits.max_dimension}x{limits.max_dimension})"
        )
    if width < limits.min_dimension or height < limits.min_dimension:
        raise InvalidImage(
            f"Image dimensions too small (min {limits.min_dimension}x{limits.min_dimension})"
        )
    return ImageInfo(format=fmt, width=width, height=height, byte_size=len(data))


def decode(data: bytes, limits: Limits) -> Image.Image:
    """Fully decode a validated image to RGB with EXIF orientation applied."""
    inspect(data, limits)
    image = _open(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning):
        raise InvalidImage("The image file is truncated or corrupt") from None
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
