"""Crop fully transparent margins, keeping a padding around the subject.

Boxes are ``(x0, y0, x1, y1)`` with exclusive ``x1``/``y1`` (slice bounds), in the coordinates
of the array they were measured on. The padding never extends past the image: the crop adds no
pixels, so a subject touching an edge keeps that edge.

A margin is pixels (``"10"``) or a percentage (``"5%"``) of the subject's own width (for the
left/right padding) and height (for top/bottom), as remove.bg's ``crop_margin``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from removal.pipeline.errors import InvalidImage

Box = tuple[int, int, int, int]


class NoForeground(InvalidImage):
    """The model found nothing to keep: storing an empty PNG would help no one."""

    def __init__(self):
        super().__init__("No foreground found in the image")


@dataclass(frozen=True)
class Margin:
    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Margin:
        """``"10"`` -> 10 px, ``"5%"`` -> 5 %. Raises ``ValueError`` on anything else."""
        text = str(text).strip()
        percent = text.endswith("%")
        number = float(text[:-1].strip() if percent else text)
        if not np.isfinite(number) or number < 0:
            raise ValueError(text)
        if not percent and number != int(number):
            raise ValueError(text)
        return cls(value=number, percent=percent)

    def pixels(self, extent: int) -> int:
        if self.percent:
            return int(round(extent * self.value / 100))
        return int(self.value)


@dataclass(frozen=True)
class Margins:
    """Four margins, CSS order (top, right, bottom, left), as remove.bg's ``crop_margin``."""

    top: Margin
    right: Margin
    bottom: Margin
    left: Margin

    @classmethod
    def parse(cls, text: str) -> Margins:
        """``"10"`` (all sides), ``"10 5%"`` (top/bottom, left/right) or ``"1 2 3 4"`` (top,
        right, bottom, left), as normalised by ``options``. ``ValueError`` otherwise."""
        values = [Margin.parse(part) for part in str(text).split()]
        if len(values) == 1:
            values *= 4
        elif len(values) == 2:
            values *= 2
        elif len(values) != 4:
            raise ValueError(text)
        return cls(*values)


def foreground_box(alpha: np.ndarray) -> Box | None:
    """Bounding box of the pixels with alpha > 0, or ``None`` when there are none."""
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or h == 0:
        return None
    return (x, y, x + w, y + h)


def padded_box(box: Box, width: int, height: int, margin: Margin | Margins) -> Box:
    """``box`` grown by ``margin`` (one for every side, or ``Margins``), clamped to the image.
    A percentage is of the subject's width (left, right) or height (top, bottom)."""
    if isinstance(margin, Margin):
        margin = Margins(margin, margin, margin, margin)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (max(0, x0 - margin.left.pixels(w)), max(0, y0 - margin.top.pixels(h)),
            min(width, x1 + margin.right.pixels(w)), min(height, y1 + margin.bottom.pixels(h)))


def crop_box(alpha: np.ndarray, margin: Margin | Margins) -> tuple[Box, Box]:
    """``(foreground box, crop box)`` for ``alpha``; raises ``NoForeground`` when empty."""
    box = foreground_box(alpha)
    if box is None:
        raise NoForeground()
    height, width = alpha.shape[:2]
    return box, padded_box(box, width, height, margin)


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """A view of ``pixels`` inside ``box`` (no copy)."""
    x0, y0, x1, y1 = box
    return pixels[y0:y1, x0:x1]
