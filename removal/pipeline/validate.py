"""Inspect and decode uploaded images.

The format is detected from the content, never from the file name. Dimensions are read from the
header before any pixel is decoded, and Pillow's decompression-bomb warning is an error.

``decode`` returns pixels as numpy arrays, never a PIL image carrying the input's metadata, so
no EXIF/GPS/XMP block can reach the output. Decisions:

* Plain JPEGs (YCbCr or grey, the common case) are decoded by ``simplejpeg`` (libjpeg-turbo,
  straight to RGB): at 12 MP about twice as fast as ``cv2.imdecode`` + BGR->RGB and four times
  Pillow's open+convert (figures in ``bench/README.md``), with pixels identical to OpenCV's.
  (OpenCV is the fallback if simplejpeg is missing.) The EXIF
  orientation is read from the header with Pillow and applied with ``cv2.rotate``/``cv2.flip``.
  Every other input goes through Pillow with ``ImageOps.exif_transpose``.
* CMYK is converted to sRGB through its embedded ICC profile when it has one (Pillow's naive
  CMYK->RGB conversion is far off for print profiles); without a profile, Pillow's formula.
* 16-bit grey (``I;16``/``I``) is scaled to 8 bits (>> 8), not clipped (Pillow's ``convert``
  would turn everything above 255 white).
* Palette, LA, PA, RGBA and 1-bit images keep their colours; an input alpha channel is
  returned separately so the cutout never makes transparent input pixels visible.
* Animated images (GIF is refused anyway; APNG, animated WebP) use their first frame.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from removal.pipeline.errors import InvalidImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
SUPPORTED_TEXT = "JPEG, PNG, WEBP, BMP"
EXIF_ORIENTATION = 0x0112


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


@dataclass
class Decoded:
    """Decoded pixels, EXIF orientation applied. ``rgb``: H x W x 3 uint8, C-contiguous."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


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


# Pillow names JPEGs that carry a multi-picture (MPF) block "MPO"; many phone photos do. The
# first picture is the photo itself, so they are JPEGs for us.
FORMAT_ALIASES = {"MPO": "JPEG"}


def _check_header(image: Image.Image, byte_size: int, limits: Limits) -> ImageInfo:
    fmt = (image.format or "").upper()
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImage(
            f"Unsupported image format: {fmt or 'unknown'}. Supported formats: {SUPPORTED_TEXT}"
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
    return ImageInfo(format=fmt, width=width, height=height, byte_size=byte_size)


def inspect(data: bytes, limits: Limits) -> ImageInfo:
    """Check size, format and dimensions from the header; no pixel is decoded."""
    check_size(len(data), limits)
    return _check_header(_open(data), len(data), limits)


def decode(data: bytes, limits: Limits) -> Decoded:
    """Validate (as ``inspect``) and decode to RGB with EXIF orientation applied."""
    check_size(len(data), limits)
    image = _open(data)
    info = _check_header(image, len(data), limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if info.format == "JPEG" and image.mode in ("RGB", "L"):
                return _decode_jpeg_fast(data, image)
            return _decode_pillow(image, info.format)
    except InvalidImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, cv2.error):
        raise InvalidImage("The image file is truncated or corrupt") from None


def _decode_jpeg_fast(data: bytes, header: Image.Image) -> Decoded:
    rgb = _jpeg_to_rgb(data)
    if rgb is None or rgb.shape[:2] != (header.height, header.width):
        raise InvalidImage("The image file is truncated or corrupt")
    orientation = header.getexif().get(EXIF_ORIENTATION, 1)
    return Decoded(rgb=orient(rgb, orientation), alpha=None, format="JPEG")


def _jpeg_to_rgb(data: bytes) -> np.ndarray | None:
    try:
        import simplejpeg
    except ImportError:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an H x W (x C) array, like ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.transpose(a),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(pixels)) if op else pixels


def _decode_pillow(image: Image.Image, fmt: str) -> Decoded:
    image.seek(0)  # animated: first frame
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode == "CMYK":
        return Decoded(rgb=_cmyk_to_srgb(image), alpha=None, format=fmt)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return Decoded(rgb=_grey16_to_rgb(image), alpha=None, format=fmt)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        rgb = np.ascontiguousarray(rgba[:, :, :3])
        alpha = np.ascontiguousarray(rgba[:, :, 3])
        return Decoded(rgb=rgb, alpha=None if alpha.min() == 255 else alpha, format=fmt)
    return Decoded(rgb=np.asarray(image.convert("RGB")).copy(), alpha=None, format=fmt)


def _cmyk_to_srgb(image: Image.Image) -> np.ndarray:
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            target = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, target, outputMode="RGB")
            return np.asarray(converted).copy()
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to the plain conversion below
    return np.asarray(image.convert("RGB")).copy()


def _grey16_to_rgb(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image).astype(np.uint32)
    if image.mode == "I" and grey.max() <= 255:
        grey8 = grey.astype(np.uint8)  # an 8-bit image stored as 32-bit ints
    else:
        grey8 = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey8[:, :, None], 3, axis=2))
