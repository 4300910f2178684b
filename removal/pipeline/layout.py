"""Where the subject goes in the result: region of interest, scale and position, size limit.

Plain numpy/OpenCV over the full-resolution ``rgb`` (H x W x 3) and ``alpha`` (H x W) arrays.
Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, as in ``trim``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from removal.pipeline import trim
from removal.pipeline.options import percent_or_pixels


def apply_roi(alpha: np.ndarray, roi: str | None) -> np.ndarray:
    """Keep only the subject inside ``roi`` (``"x1 y1 x2 y2"``, pixels or percent): alpha is
    zeroed outside it. remove.bg's ``roi``."""
    if not roi:
        return alpha
    height, width = alpha.shape
    x1, y1, x2, y2 = roi.split()
    box = (
        min(percent_or_pixels(x1, width), width), min(percent_or_pixels(y1, height), height),
        min(percent_or_pixels(x2, width), width), min(percent_or_pixels(y2, height), height),
    )
    kept = np.zeros_like(alpha)
    x0, y0, x1_, y1_ = box
    if x1_ > x0 and y1_ > y0:
        kept[y0:y1_, x0:x1_] = alpha[y0:y1_, x0:x1_]
    return kept


def place(rgb: np.ndarray, alpha: np.ndarray, *, scale: str, position: str):
    """Scale and move the subject (the alpha > 0 box) on a canvas of the same size.

    ``scale`` ``"N%"`` fits the subject's box into N % of the canvas (aspect kept); ``position``
    ``"H% V%"`` puts its box at that fraction of the free room (``center`` = 50 % 50 %).
    Scaling without a position centres the subject, as remove.bg does. Returns new arrays; the
    canvas outside the subject is transparent (and black under it).
    """
    if scale == "original" and position == "original":
        return rgb, alpha
    box = trim.foreground_box(alpha)
    if box is None:
        raise trim.NoForeground()
    height, width = alpha.shape
    x0, y0, x1, y1 = box
    subject_rgb, subject_alpha = trim.crop(rgb, box), trim.crop(alpha, box)
    sw, sh = x1 - x0, y1 - y0
    if scale != "original":
        fraction = float(scale[:-1]) / 100
        factor = min(fraction * width / sw, fraction * height / sh)
        sw, sh = max(1, round(sw * factor)), max(1, round(sh * factor))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        subject_rgb = cv2.resize(subject_rgb, (sw, sh), interpolation=interpolation)
        subject_alpha = cv2.resize(subject_alpha, (sw, sh), interpolation=interpolation)
        if position == "original":
            position = "center"
    if position == "original":
        left, top = x0, y0
    else:
        horizontal, vertical = (50.0, 50.0) if position == "center" else (
            float(p[:-1]) for p in position.split())
        left = round((width - sw) * horizontal / 100)
        top = round((height - sh) * vertical / 100)
    canvas_rgb = np.zeros_like(rgb)
    canvas_alpha = np.zeros_like(alpha)
    canvas_rgb[top:top + sh, left:left + sw] = subject_rgb
    canvas_alpha[top:top + sh, left:left + sw] = subject_alpha
    return canvas_rgb, canvas_alpha


def limit_size(rgb: np.ndarray, alpha: np.ndarray, max_megapixels: float | None):
    """Scale both down (area interpolation) so width x height <= ``max_megapixels`` million."""
    height, width = alpha.shape
    if max_megapixels is None or width * height <= max_megapixels * 1_000_000:
        return rgb, alpha
    factor = math.sqrt(max_megapixels * 1_000_000 / (width * height))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
            cv2.resize(alpha, size, interpolation=cv2.INTER_AREA))


def cover(background: np.ndarray, width: int, height: int) -> np.ndarray:
    """``background`` resized to fill ``width`` x ``height`` (aspect kept) and centre-cropped;
    as remove.bg places ``bg_image_*``. An image of the exact size is used as it is."""
    bh, bw = background.shape[:2]
    if (bw, bh) == (width, height):
        return background
    factor = max(width / bw, height / bh)
    size = (max(width, math.ceil(bw * factor)), max(height, math.ceil(bh * factor)))
    resized = cv2.resize(background, size, interpolation=cv2.INTER_AREA if factor < 1
                         else cv2.INTER_LINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])
