"""Mask clean-up: specks go, pin-holes close, the subject's outline stays."""

from __future__ import annotations

import cv2
import numpy as np

from removal.pipeline.refine import RefineSettings, fill_holes, refine, remove_specks


def subject() -> np.ndarray:
    """A 200x200 mask: a soft-edged square subject in the middle."""
    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[50:150, 50:150] = 255
    return cv2.GaussianBlur(mask, (5, 5), 1)


def test_small_specks_are_removed_with_their_rim():
    mask = subject()
    mask[10:13, 10:13] = 255  # a 9-pixel speck
    mask[9, 9] = 60  # its soft rim
    remove_specks(mask, max_pixels=50)
    assert mask[8:14, 8:14].max() == 0
    assert mask[100, 100] == 255


def test_islands_bigger_than_the_limit_stay():
    mask = subject()
    mask[10:20, 10:20] = 255  # 100 px
    remove_specks(mask, max_pixels=50)
    assert mask[15, 15] == 255


def test_enclosed_pin_holes_are_filled():
    mask = subject()
    mask[99:102, 99:102] = 0
    fill_holes(mask, max_pixels=50)
    assert mask[100, 100] == 255


def test_large_holes_and_open_background_stay():
    mask = subject()
    mask[70:130, 70:130] = 0  # 3600 px: a real hole (e.g. between arm and body)
    fill_holes(mask, max_pixels=50)
    assert mask[100, 100] == 0
    assert mask[0, 0] == 0  # the background around the subject touches the border


def test_refine_defaults_keep_the_outline_and_do_not_modify_the_input():
    mask = subject()
    mask[99, 99] = 0
    mask[5, 5] = 255
    before = mask.copy()
    out = refine(mask)
    assert np.array_equal(mask, before)
    assert out[99, 99] == 255 and out[5, 5] == 0
    changed = out != before
    assert changed.sum() == 2  # only the speck and the pin-hole


def test_feather_softens_the_edge():
    hard = np.zeros((100, 100), dtype=np.uint8)
    hard[:, 50:] = 255
    out = refine(hard, RefineSettings(speck_area=0, hole_area=0, feather=2.0))
    assert 0 < out[50, 49] < 255 and 0 < out[50, 50] < 255
    assert out[50, 0] == 0 and out[50, 99] == 255
