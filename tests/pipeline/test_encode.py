"""Compose and encode: straight alpha, colour fill, mask only, PNG and WebP bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from removal.pipeline.encode import build, encode, parse_hex_color


def sample():
    rgb = np.zeros((60, 80, 3), dtype=np.uint8)
    rgb[:] = (10, 200, 30)
    alpha = np.zeros((60, 80), dtype=np.uint8)
    alpha[:, 40:] = 255
    alpha[:, 39] = 128
    return rgb, alpha


def read(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_png_cutout_has_straight_alpha_and_black_under_transparency():
    rgb, alpha = sample()
    data = encode(build(rgb, alpha, channels="rgba", bg_color=None), "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out = np.asarray(read(data))
    assert out.shape == (60, 80, 4)
    assert out[0, 60].tolist() == [10, 200, 30, 255]
    assert out[0, 39].tolist() == [10, 200, 30, 128]  # colour not darkened by alpha
    assert out[0, 0].tolist() == [0, 0, 0, 0]


def test_bg_color_fills_the_background_and_blends_the_edge():
    rgb, alpha = sample()
    out = np.asarray(read(encode(build(rgb, alpha, channels="rgba", bg_color="#ffffff"), "png")))
    assert out.shape == (60, 80, 3)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 60].tolist() == [10, 200, 30]
    assert out[0, 39].tolist() == [132, 227, 142]  # (c*128 + 255*127) / 255, rounded


def test_alpha_channel_output_is_the_mask_as_grey_png():
    rgb, alpha = sample()
    image = read(encode(build(rgb, alpha, channels="alpha", bg_color="#ff0000"), "png"))
    assert image.mode == "L"
    assert np.array_equal(np.asarray(image), alpha)


def test_webp_keeps_the_alpha():
    rgb, alpha = sample()
    image = read(encode(build(rgb, alpha, channels="rgba", bg_color=None), "webp"))
    assert image.format == "WEBP" and image.mode == "RGBA"
    out = np.asarray(image)
    assert out[30, 0, 3] == 0 and out[30, 70, 3] == 255
    assert np.abs(out[30, 70, :3].astype(int) - [10, 200, 30]).max() <= 8


@pytest.mark.parametrize(
    ("text", "rgb"),
    [("#ffffff", (255, 255, 255)), ("00ff80", (0, 255, 128)), ("#F0A", (255, 0, 170))],
)
def test_hex_colours(text, rgb):
    assert parse_hex_color(text) == rgb


@pytest.mark.parametrize("text", ["#ffff", "red", "#gggggg", ""])
def test_bad_hex_colours(text):
    with pytest.raises(ValueError):
        parse_hex_color(text)
