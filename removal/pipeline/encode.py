"""Build the output pixels (cutout, mask only, or on a colour) and encode them.

Output pixels are built from arrays, so nothing of the input's metadata (EXIF, GPS, XMP, ICC)
is ever written.

PNG encoder, chosen by measurement against Pillow, OpenCV, imagecodecs and libspng (the figures
are in ``bench/README.md``): ``fpng``, a single-pass deflate specialised for PNG, by far the
fastest for a few percent more bytes; it writes standard PNGs that every decoder reads. It only
writes 3- and 4-channel images, so the one-channel mask (``channels="alpha"``) goes through
OpenCV at level 1.

Pixels under fully transparent alpha are set to black: invisible either way, they compress to
almost nothing and the original photo cannot be recovered from them.

WebP: lossy quality 90 with lossless alpha (libwebp's default ``alpha_quality=100``), method 4.

JPEG (``jpg``): quality 90 through ``simplejpeg`` (libjpeg-turbo, already used to decode); a
transparent cut-out is flattened onto white first, as remove.bg does. ``zip`` is remove.bg's
layout: ``color.jpg`` (the colour pixels) and ``alpha.png`` (the mask), to be combined by the
client; both files in one uncompressed ZIP (their contents are compressed already).
"""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
from PIL import Image

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg",
                 "zip": "application/zip"}
WEBP_QUALITY = 90
JPEG_QUALITY = 90
WHITE = (255, 255, 255)


def parse_hex_color(text: str) -> tuple[int, int, int]:
    """``'#ffcc00'``, ``'ffcc00'`` or ``'#fc0'`` -> ``(255, 204, 0)``; ``ValueError`` otherwise."""
    value = text.strip().removeprefix("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(text)
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def cutout(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) from RGB + alpha; RGB set to 0 where alpha is 0."""
    height, width = alpha.shape
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    cv2.mixChannels([rgb, alpha], [rgba], [0, 0, 1, 1, 2, 2, 3, 3])
    visible = cv2.compare(alpha, 0, cv2.CMP_GT)
    return cv2.bitwise_and(rgba, rgba, mask=visible)


def on_color(rgb: np.ndarray, alpha: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Opaque RGB: the cutout composited over ``color`` (integer maths, rounded)."""
    a = alpha.astype(np.uint16)[:, :, None]
    background = np.array(color, dtype=np.uint16)
    out = rgb.astype(np.uint16) * a
    out += background * (255 - a)
    out += 127
    out //= 255
    return out.astype(np.uint8)


def on_image(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Opaque RGB: the cutout composited over ``background`` (same H x W x 3), rounded."""
    a = alpha.astype(np.uint16)[:, :, None]
    out = rgb.astype(np.uint16) * a
    out += background.astype(np.uint16) * (255 - a)
    out += 127
    out //= 255
    return out.astype(np.uint8)


def build(rgb: np.ndarray, alpha: np.ndarray, *, channels: str, bg_color: str | None,
          background: np.ndarray | None = None):
    """The output pixels: mask only (``alpha``), cutout on an image or a colour, or RGBA."""
    if channels == "alpha":
        return np.ascontiguousarray(alpha)
    if background is not None:
        return on_image(rgb, alpha, background)
    if bg_color:
        return on_color(rgb, alpha, parse_hex_color(bg_color))
    return cutout(rgb, alpha)


def resolve_format(fmt: str, pixels: np.ndarray) -> str:
    """``auto``: JPEG for opaque results (on a colour or image), PNG for transparency/masks."""
    if fmt != "auto":
        return fmt
    return "jpg" if pixels.ndim == 3 and pixels.shape[2] == 3 else "png"


def encode_jpeg(pixels: np.ndarray) -> bytes:
    import simplejpeg

    if pixels.ndim == 2:
        return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels[:, :, None]),
                                      quality=JPEG_QUALITY, colorspace="GRAY")
    if pixels.shape[2] == 4:
        pixels = on_color(pixels[:, :, :3], pixels[:, :, 3], WHITE)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=JPEG_QUALITY,
                                  colorspace="RGB")


def encode_zip(color: np.ndarray, alpha: np.ndarray) -> bytes:
    """remove.bg's ZIP: ``color.jpg`` (RGB) and ``alpha.png`` (the mask, same size)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", encode_jpeg(color))
        archive.writestr("alpha.png", encode_png(np.ascontiguousarray(alpha)))
    return buffer.getvalue()


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """Encode H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 pixels as PNG, WebP or
    JPEG (``zip`` needs the colour and the mask apart: ``encode_zip``)."""
    if fmt == "webp":
        return encode_webp(pixels)
    if fmt == "jpg":
        return encode_jpeg(pixels)
    return encode_png(pixels)


def encode_png(pixels: np.ndarray) -> bytes:
    if pixels.ndim == 2:
        ok, buffer = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError("PNG encoding failed")
        return buffer.tobytes()
    try:
        import fpng
    except ImportError:  # not installed: same PNG, several times slower (bench/README.md)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()
    return fpng.from_ndarray(np.ascontiguousarray(pixels))


def encode_webp(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()
