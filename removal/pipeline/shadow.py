"""remove.bg's ``add_shadow``: a soft contact shadow under the subject, for every subject.

remove.bg adds its shadow to car photos only; QuickBG draws one under any subject, since a
cut-out on a plain background looks pasted on without one. The shadow is the subject's own
silhouette, moved down and blurred, at a fraction of full black:

* offset: ``OFFSET`` of the subject box's height, straight down (light from above), so the
  shadow shows most under the subject's base, where it meets the ground;
* blur: a Gaussian of sigma ``BLUR`` of the box's height, so it stays soft at any size;
* opacity: ``OPACITY`` at most, where the shadow is deepest.

All three follow from the subject's box, so a shadow looks the same at preview and full size.
The blur runs on a copy scaled down to a sigma of about ``WORK_SIGMA`` pixels and is scaled back
up (a sigma of 100 pixels at 12 MP would otherwise cost seconds; the result is a low-frequency
image either way, so nothing visible is lost).

``contact_shadow`` gives the shadow's alpha (H x W uint8); ``encode.build`` lays it, black,
between the background (colour, image, or nothing: a transparent PNG then carries the shadow in
its alpha) and the subject. ``reach`` is how far past the subject's box it shows, for the crop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from removal.pipeline import trim

OFFSET = 0.02
BLUR = 0.03
OPACITY = 0.5
WORK_SIGMA = 4.0


def _extent(box: trim.Box) -> tuple[int, float]:
    """``(offset, sigma)`` in pixels for a subject box."""
    height = box[3] - box[1]
    return max(1, round(OFFSET * height)), max(1.0, BLUR * height)


def reach(box: trim.Box) -> int:
    """Pixels past the subject's box where the shadow is still visible (offset + 3 sigma)."""
    offset, sigma = _extent(box)
    return offset + math.ceil(3 * sigma)


def contact_shadow(alpha: np.ndarray) -> np.ndarray | None:
    """The shadow's alpha for ``alpha``'s subject (same shape, uint8), or ``None`` without one."""
    box = trim.foreground_box(alpha)
    if box is None:
        return None
    offset, sigma = _extent(box)
    height, width = alpha.shape
    moved = np.zeros_like(alpha)
    moved[offset:] = alpha[: height - offset]
    factor = max(1.0, sigma / WORK_SIGMA)
    if factor > 1:
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        small = cv2.resize(moved, size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
        blurred = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        blurred = cv2.GaussianBlur(moved, (0, 0), sigma)
    return cv2.convertScaleAbs(blurred, alpha=OPACITY)
