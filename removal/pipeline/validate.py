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
import re
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from removal.pipeline.errors import FileTooLarge, InvalidImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
SUPPORTED_TEXT = "JPEG, PNG, WEBP, BMP"
# The only Pillow decoders that ever see untrusted bytes (``Image.open(formats=...)``). JPEGs
# with a multi-picture block come back as "MPO" from the JPEG opener itself.
PILLOW_FORMATS = SUPPORTED_FORMATS
CORRUPT = "The image file is truncated or corrupt"
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
        raise FileTooLarge(
            f"File size ({byte_size / (1024 * 1024):.1f}MB) exceeds maximum "
            f"({_mb(limits.max_bytes)}MB)"
        )


# Formats we refuse, named from their signature only (no Pillow plugin parses them), so the
# refusal can say what was sent.
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"),
    (b"8BPS", "PSD"), (b"\0\0\1\0", "ICO"), (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
)


def _other_format(data: bytes) -> str | None:
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "HEIC"
    return None


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("Image dimensions too large (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        other = _other_format(data)
        if other:
            raise InvalidImage(
                f"Unsupported image format: {other}. Supported formats: {SUPPORTED_TEXT}"
            ) from None
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
    """Check size, format and dimensions from the header, then that the image data is whole.

    The header is checked first, so the dimension and bomb limits hold before anything else is
    read. Then ``check_complete`` refuses a truncated file (and, for PNG, any corrupted chunk)
    at upload, with a 400, instead of a task that fails in the worker.
    """
    check_size(len(data), limits)
    image = _open(data)
    info = _check_header(image, len(data), limits)
    check_complete(data, image, info.format)
    return info


# A marker inside entropy-coded JPEG data: 0xFF followed by neither a stuffed 0x00 nor a
# restart marker (RST0-RST7), which belong to the scan.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def check_complete(data: bytes, image: Image.Image, fmt: str) -> None:
    """Raise ``InvalidImage`` when the image data is truncated (or a PNG chunk is corrupt).

    The cheapest check that catches truncation, per format (figures in ``bench/upload.py``; at
    10 MB / 12 MP a JPEG decode even at 1/8 scale costs ~300 ms per upload on the 2-core
    machine, this check about 2 ms):

    * JPEG: walk the marker structure (segment lengths, every scan up to its end) and require
      the EOI marker. Bytes after EOI are allowed (phones append a second picture).
    * PNG: Pillow's ``verify`` reads every chunk up to IEND and checks each CRC, so a cut or a
      flipped bit anywhere in the compressed data is caught without inflating it.
    * WEBP: the RIFF container's declared size must be present.
    * BMP: decoded in full (uncompressed data; the decoder only copies bytes).

    Not caught here: entropy-coded JPEG or VP8 data that is corrupt but complete; the worker's
    decoder (strict) fails those tasks with the same message.
    """
    try:
        if fmt == "JPEG":
            whole = _jpeg_is_whole(data)
        elif fmt == "WEBP":
            whole = len(data) >= 8 + int.from_bytes(data[4:8], "little")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                if fmt == "PNG":
                    image.verify()
                else:
                    image.load()
            whole = True
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
            Image.DecompressionBombWarning):
        whole = False
    if not whole:
        raise InvalidImage(CORRUPT)


def _jpeg_is_whole(data: bytes) -> bool:
    """True when the JPEG's markers lead, segment by segment and scan by scan, to EOI."""
    size, pos = len(data), 2  # after SOI (the header check has seen it)
    while pos < size:
        if data[pos] != 0xFF:
            return False
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            return False
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if pos + 2 > size:
            return False
        length = struct.unpack_from(">H", data, pos)[0]
        if length < 2 or pos + length > size:
            return False
        pos += length
        if marker == 0xDA:  # SOS: the entropy-coded data runs to the next real marker
            found = _JPEG_SCAN_END.search(data, pos)
            if found is None:
                return False
            pos = found.start()
    return False


def decode(data: bytes, limits: Limits) -> Decoded:
    """Validate (as ``inspect``) and decode to RGB with EXIF orientation applied."""
    check_size(len(data), limits)
    image = _open(data)
    info = _check_header(image, len(data), limits)
    # What the upload check refuses, decoding refuses too (``verify`` spends its image).
    check_complete(data, _open(data) if info.format == "PNG" else image, info.format)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if info.format == "JPEG" and image.mode in ("RGB", "L"):
                return _decode_jpeg_fast(data, image)
            return _decode_pillow(image, info.format)
    except InvalidImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, cv2.error):
        raise InvalidImage(CORRUPT) from None


def _decode_jpeg_fast(data: bytes, header: Image.Image) -> Decoded:
    rgb = _jpeg_to_rgb(data)
    if rgb is None or rgb.shape[:2] != (header.height, header.width):
        raise InvalidImage(CORRUPT)
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
