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
layout (``encode_zip``): ``color.jpg`` (RGB, the result's colours, with the subject's colours
spread under its transparent parts: ``spread_colors``) then ``alpha.png`` (8-bit grey, the
result's alpha: white is opaque), both the result's size, for the client to combine
(``convert color.jpg alpha.png -compose CopyOpacity -composite out.png``); an opaque result (on a
colour or an image) has an all-white alpha. Both files in one uncompressed ZIP (their contents
are compressed already).
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
SPREAD_SIZE = 1024  # the long side at which spread_colors computes the ZIP's fill


def parse_hex_color(text: str) -> tuple[int, int, int]:
    """``'#ffcc00'``, ``'ffcc00'`` or ``'#fc0'`` -> ``(255, 204, 0)``; ``ValueError`` otherwise."""
    value = text.strip().removeprefix("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(text)
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def parse_color(text: str) -> tuple[int, int, int, int]:
    """remove.bg's ``bg_color``: 3-, 4-, 6- or 8-digit hex with or without ``#`` (the last
    digits are alpha: ``81d4fa77``), or a CSS colour name (``green``, through Pillow's
    ``ImageColor``) -> ``(r, g, b, a)``; ``ValueError`` otherwise."""
    value = text.strip().removeprefix("#")
    if value and all(c in "0123456789abcdefABCDEF" for c in value):
        if len(value) in (3, 4):
            value = "".join(c * 2 for c in value)
        if len(value) == 6:
            value += "ff"
        if len(value) == 8:
            return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4, 6))
        raise ValueError(text)
    from PIL import ImageColor

    return ImageColor.getcolor(text.strip(), "RGBA")


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
          background: np.ndarray | None = None, shadow: np.ndarray | None = None):
    """The output pixels: mask only (``alpha``), cutout on an image or a colour, or RGBA.

    ``shadow`` (an alpha, ``pipeline.shadow``) is laid in black between the background and the
    subject. A colour with alpha (``#81d4fa77``) or a shadow on no background gives RGBA."""
    if channels == "alpha":
        return np.ascontiguousarray(alpha)
    color = parse_color(bg_color) if bg_color else None
    if background is None and color is not None and color[3] == 255:
        if shadow is None:
            return on_color(rgb, alpha, color[:3])
        background = np.empty_like(rgb)
        background[:] = color[:3]
    if background is not None:
        if shadow is not None:
            background = on_color(background, 255 - shadow, (0, 0, 0))
        return on_image(rgb, alpha, background)
    if color is None and shadow is None:
        return cutout(rgb, alpha)
    return _over_translucent(rgb, alpha, color, shadow)


def _over_translucent(rgb, alpha, color, shadow) -> np.ndarray:
    """RGBA (straight alpha): the subject over a black ``shadow`` over a colour with alpha (or
    over nothing). One plane at a time, so a 12 MP result holds no H x W x 3 float arrays."""
    a = alpha.astype(np.float32) / 255
    s = shadow.astype(np.float32) / 255 if shadow is not None else np.float32(0)
    color_alpha = np.float32(color[3] / 255 if color is not None else 0)
    under = s + color_alpha * (1 - s)  # the shadow over the colour
    out_a = a + under * (1 - a)
    inverse = 1 / np.maximum(out_a, np.float32(1e-6))
    own = a * inverse  # the subject's share of each output colour
    colored = color_alpha * (1 - s) * (1 - a) * inverse  # the colour's (the shadow is black)
    rgba = np.empty((*alpha.shape, 4), dtype=np.uint8)
    for channel in range(3):
        plane = rgb[:, :, channel] * own
        if color is not None:
            plane += np.float32(color[channel]) * colored
        rgba[:, :, channel] = np.clip(plane + 0.5, 0, 255)
    rgba[:, :, 3] = np.clip(out_a * 255 + 0.5, 0, 255)
    rgba[rgba[:, :, 3] == 0] = 0
    return rgba


def spread_colors(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` where ``alpha`` > 0; elsewhere the subject's own colours spread outwards and
    blurred (push-pull over an image pyramid), never the original background.

    remove.bg's ``color.jpg`` is laid out this way ("blurry in areas with transparency"): the
    client multiplies it by ``alpha.png``, so what lies under alpha 0 is never seen, but colour
    bleeding across the edge, and JPEG's 8 x 8 blocks at the edge, come from the subject, not
    the old background, which is also not handed out this way."""
    height, width = alpha.shape
    factor = max(1.0, max(height, width) / SPREAD_SIZE)  # the fill is blurred: work small
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    # rgb x alpha fits uint16 (255 x 255): one integer pass at full size, floats only when small.
    premultiplied = cv2.multiply(rgb, cv2.merge([alpha, alpha, alpha]), dtype=cv2.CV_16U)
    premultiplied = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
    premultiplied = premultiplied.astype(np.float32) / 255
    weight = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    levels = [(premultiplied, weight)]
    while min(levels[-1][1].shape) > 1:
        premultiplied, w = levels[-1]
        size = (max(1, w.shape[1] // 2), max(1, w.shape[0] // 2))
        levels.append((cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(w, size, interpolation=cv2.INTER_AREA)))
    premultiplied, w = levels[-1]
    color = premultiplied / np.maximum(w, 1e-6)[:, :, None]
    for premultiplied, w in reversed(levels[:-1]):
        up = cv2.resize(color, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        color = premultiplied + up * (1 - w)[:, :, None]
    color = np.clip(color + 0.5, 0, 255).astype(np.uint8)
    filled = cv2.resize(color, (width, height), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(rgb, cv2.compare(alpha, 0, cv2.CMP_GT), filled)
    return filled


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


def zip_layers(pixels: np.ndarray, rgb: np.ndarray, alpha: np.ndarray):
    """``(color, alpha)`` for remove.bg's ZIP from the built ``pixels``: an opaque result keeps
    its colours under an all-white alpha; an RGBA one is split, its colours spread under the
    transparent parts; a mask (``channels=alpha``) goes with the subject's spread colours."""
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels, np.full(pixels.shape[:2], 255, dtype=np.uint8)
    if pixels.ndim == 3:
        layer = np.ascontiguousarray(pixels[:, :, 3])
        return spread_colors(np.ascontiguousarray(pixels[:, :, :3]), layer), layer
    return spread_colors(rgb, alpha), alpha


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
