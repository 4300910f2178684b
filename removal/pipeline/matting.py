"""rembg's alpha matting (pymatting closed-form alpha) as an optional refinement.

The trimap comes from the model's mask exactly as in ``rembg.bg.alpha_matting_cutout``: pixels
above ``foreground_threshold`` are sure foreground, below ``background_threshold`` sure
background, both eroded by an ``erode_size`` square; the band between is solved by pymatting.
We call rembg's function and keep only its alpha (the colours stay the photo's own).

Closed-form matting builds a sparse system over every pixel: its time and memory grow with the
image (minutes and several GB at 12 MP). It therefore runs at no more than ``MAX_PIXELS``
(~2 MP) and its alpha is scaled back up; the job timeout bounds it further. If pymatting fails
to converge (rembg raises ``ValueError``) the model's mask is kept, as rembg does.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

MAX_PIXELS = 2_000_000


def alpha_matting(
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    foreground_threshold: int = 240,
    background_threshold: int = 10,
    erode_size: int = 10,
) -> np.ndarray:
    """Refined alpha (uint8, the size of ``mask``) from rembg's pymatting path."""
    from rembg.bg import alpha_matting_cutout

    height, width = mask.shape
    scale = min(1.0, math.sqrt(MAX_PIXELS / (width * height)))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        work_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    else:
        work_rgb, work_mask = rgb, mask
    try:
        result = alpha_matting_cutout(
            Image.fromarray(work_rgb), Image.fromarray(work_mask),
            foreground_threshold, background_threshold, erode_size,
        )
    except ValueError:
        return mask
    alpha = np.asarray(result)[:, :, 3]
    if scale < 1.0:
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(alpha)
