"""Trim: foreground box, padding in px and %, clamping, no foreground."""

from __future__ import annotations

import numpy as np
import pytest

from removal.pipeline.trim import Margin, NoForeground, crop, crop_box, foreground_box


def alpha_with_box(x0, y0, x1, y1, shape=(100, 200)) -> np.ndarray:
    alpha = np.zeros(shape, dtype=np.uint8)
    alpha[y0:y1, x0:x1] = 200
    return alpha


def test_foreground_box_is_exclusive_slice_bounds():
    assert foreground_box(alpha_with_box(30, 20, 60, 45)) == (30, 20, 60, 45)


def test_faint_pixels_count_as_foreground():
    alpha = np.zeros((50, 50), dtype=np.uint8)
    alpha[7, 9] = 1
    assert foreground_box(alpha) == (9, 7, 10, 8)


def test_pixel_margin_pads_every_side():
    box, padded = crop_box(alpha_with_box(30, 20, 60, 45), Margin.parse("10"))
    assert box == (30, 20, 60, 45)
    assert padded == (20, 10, 70, 55)


def test_percent_margin_is_relative_to_the_subject():
    _, padded = crop_box(alpha_with_box(100, 20, 140, 70), Margin.parse("10%"))
    assert padded == (96, 15, 144, 75)  # 10 % of 40 wide, 10 % of 50 high


def test_padding_is_clamped_to_the_image():
    _, padded = crop_box(alpha_with_box(2, 0, 198, 95), Margin.parse("10"))
    assert padded == (0, 0, 200, 100)


def test_no_foreground_is_a_clear_error():
    with pytest.raises(NoForeground, match="No foreground found in the image"):
        crop_box(np.zeros((40, 40), dtype=np.uint8), Margin.parse("10"))


def test_crop_is_a_view_of_the_box():
    pixels = np.arange(20 * 30).reshape(20, 30)
    part = crop(pixels, (5, 2, 9, 4))
    assert part.shape == (2, 4) and part[0, 0] == pixels[2, 5]


@pytest.mark.parametrize("text", ["-1", "abc", "1.5", "", "nan%"])
def test_bad_margins_are_refused(text):
    with pytest.raises(ValueError):
        Margin.parse(text)
