"""Alpha matting through rembg's pymatting path."""

from __future__ import annotations

import numpy as np

from removal.pipeline import matting


def scene():
    """A white square on black, with a model-like mask that is too wide (blurry) at the edge."""
    rgb = np.zeros((80, 80, 3), dtype=np.uint8)
    rgb[20:60, 20:60] = 255
    mask = np.zeros((80, 80), dtype=np.uint8)
    mask[16:64, 16:64] = 128
    mask[24:56, 24:56] = 255
    return rgb, mask


def test_matting_sharpens_the_alpha_to_the_real_edge():
    rgb, mask = scene()
    alpha = matting.alpha_matting(rgb, mask, erode_size=2)
    assert alpha.shape == (80, 80) and alpha.dtype == np.uint8
    assert alpha[40, 40] == 255  # sure foreground
    assert alpha[2, 2] == 0  # sure background
    assert alpha[18, 40] < 40  # unsure band, black in the photo: background
    assert alpha[22, 40] > 215  # unsure band, white in the photo: foreground


def test_large_images_are_matted_at_a_bounded_resolution(monkeypatch):
    monkeypatch.setattr(matting, "MAX_PIXELS", 40 * 40)
    rgb, mask = scene()
    alpha = matting.alpha_matting(rgb, mask, erode_size=1)
    assert alpha.shape == (80, 80)
    assert alpha[40, 40] > 240 and alpha[2, 2] < 15
