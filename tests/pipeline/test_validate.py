"""Decode and validate: formats, header checks, orientation, colour modes, metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from removal.pipeline.validate import InvalidImage, Limits, decode, inspect, orient
from tests.images import make_image

LIMITS = Limits()


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(width=120, height=80) -> Image.Image:
    """An RGB image whose pixels say where they are: R = x, G = y."""
    x = np.tile(np.arange(width, dtype=np.uint8), (height, 1))
    y = np.tile(np.arange(height, dtype=np.uint8)[:, None], (1, width))
    return Image.fromarray(np.dstack([x, y, np.full_like(x, 77)]))


def test_format_is_detected_from_content():
    info = inspect(make_image("PNG"), LIMITS)
    assert (info.format, info.width, info.height) == ("PNG", 120, 90)


def test_gif_is_refused_by_name():
    with pytest.raises(InvalidImage, match="Unsupported image format: GIF"):
        inspect(make_image("GIF", mode="P", color=1), LIMITS)


def test_garbage_is_not_an_image():
    with pytest.raises(InvalidImage, match="not a valid image"):
        decode(b"definitely not an image" * 10, LIMITS)


def test_dimensions_are_checked_from_the_header_before_decoding():
    # A 5000x60 PNG header followed by truncated data: refused for its size, not its corruption.
    data = encode(Image.new("L", (5000, 60)), "PNG")[:200]
    with pytest.raises(InvalidImage, match=r"Image dimensions too large \(max 4096x4096\)"):
        decode(data, LIMITS)


def test_too_small_is_refused():
    with pytest.raises(InvalidImage, match="too small"):
        decode(make_image("PNG", size=(40, 200)), LIMITS)


def test_decompression_bomb_warning_is_an_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # warning above this, error 2x
    with pytest.raises(InvalidImage, match="decompression bomb"):
        decode(make_image("PNG", size=(150, 100)), Limits(max_dimension=10_000))


def test_grey_jpeg_becomes_rgb():
    grey = Image.fromarray(np.tile(np.arange(0, 240, 2, dtype=np.uint8), (80, 1)))
    rgb = decode(encode(grey, "JPEG", quality=95), LIMITS).rgb
    assert rgb.shape == (80, 120, 3)
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    assert abs(int(rgb[40, 60, 1]) - 120) <= 2


def test_truncated_jpeg_is_corrupt():
    data = encode(gradient(400, 300), "JPEG")
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode(data[: len(data) // 3], LIMITS)


def test_jpeg_pixels_match_pillow():
    data = encode(gradient(), "JPEG", quality=95)
    ours = decode(data, LIMITS).rgb
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert ours.shape == (80, 120, 3)
    assert np.abs(ours.astype(int) - pillow).max() <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_like_pillow(orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    params = {"quality": 95} if fmt == "JPEG" else {}
    data = encode(gradient(), fmt, exif=exif.tobytes(), **params)
    expected = np.asarray(
        ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    )
    ours = decode(data, LIMITS).rgb
    assert ours.shape == expected.shape
    assert (80, 120) == (ours.shape[:2] if orientation < 5 else ours.shape[1::-1])
    assert np.abs(ours.astype(int) - expected).max() <= 2


def test_orient_rotates_90_clockwise():
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert orient(pixels, 6).tolist() == [[3, 0], [4, 1], [5, 2]]


def test_cmyk_jpeg_becomes_rgb_with_its_colour():
    cmyk = Image.new("RGB", (64, 64), (200, 40, 40)).convert("CMYK")
    rgb = decode(encode(cmyk, "JPEG", quality=95), LIMITS).rgb
    assert np.abs(rgb[32, 32].astype(int) - [200, 40, 40]).max() <= 6


def test_cmyk_with_a_broken_icc_profile_falls_back_to_the_plain_conversion():
    cmyk = Image.new("RGB", (64, 64), (200, 40, 40)).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95, icc_profile=b"not a real profile")
    rgb = decode(data, LIMITS).rgb
    assert np.abs(rgb[32, 32].astype(int) - [200, 40, 40]).max() <= 6


def test_16_bit_grey_is_scaled_not_clipped():
    grey = np.full((60, 60), 32768, dtype=np.uint16)  # mid grey in 16 bits
    grey[:, 30:] = 65535
    data = encode(Image.fromarray(grey), "PNG")
    rgb = decode(data, LIMITS).rgb
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[0, 59].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["P", "L", "1"])
def test_palette_grey_and_bilevel_images_become_rgb(mode):
    image = Image.new("RGB", (60, 60), (255, 255, 255)).convert(mode)
    decoded = decode(encode(image, "PNG"), LIMITS)
    assert decoded.rgb.shape == (60, 60, 3)
    assert decoded.rgb[10, 10].tolist() == [255, 255, 255]
    assert decoded.alpha is None


def test_la_image_keeps_its_alpha_separately():
    image = Image.new("LA", (60, 60), (90, 255))
    image.putpixel((5, 5), (90, 0))
    decoded = decode(encode(image, "PNG"), LIMITS)
    assert decoded.rgb[5, 5].tolist() == [90, 90, 90]
    assert decoded.alpha[5, 5] == 0 and decoded.alpha[6, 6] == 255


def test_animated_webp_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), c) for c in ((250, 0, 0), (0, 0, 250))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    rgb = decode(data, LIMITS).rgb
    assert rgb[32, 32].tolist() == [250, 0, 0]


def test_animated_png_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), c) for c in ((0, 250, 0), (0, 0, 250))]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    rgb = decode(data, LIMITS).rgb
    assert rgb[32, 32].tolist() == [0, 250, 0]


def test_jpeg_with_a_multi_picture_block_is_a_jpeg():
    """Phone cameras write MPF blocks; Pillow then calls the file MPO."""
    import io as _io

    from PIL import Image as _Image

    from removal.pipeline.validate import Limits, decode, inspect

    first = _Image.new("RGB", (120, 90), (200, 10, 10))
    second = _Image.new("RGB", (60, 45), (10, 200, 10))
    buffer = _io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    data = buffer.getvalue()
    assert _Image.open(_io.BytesIO(data)).format == "MPO"
    info = inspect(data, Limits())
    assert (info.format, info.width, info.height) == ("JPEG", 120, 90)
    decoded = decode(data, Limits())
    assert (decoded.width, decoded.height) == (120, 90)


@pytest.mark.parametrize("fmt,params", [
    ("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("WEBP", {"quality": 90}),
    ("BMP", {}),
], ids=["jpeg", "progressive-jpeg", "png", "webp", "bmp"])
def test_a_file_cut_anywhere_is_refused_at_inspection(fmt, params):
    noisy = Image.effect_noise((300, 200), 60).convert("RGB")
    data = encode(noisy, fmt, **params)
    assert inspect(data, LIMITS).format == fmt  # whole: accepted
    for fraction in (0.3, 0.5, 0.8, 0.95, 0.999):
        # (A WebP cut early does not even open: "not a valid image"; a refusal all the same.)
        with pytest.raises(InvalidImage, match="^(The image file is truncated or corrupt"
                                               "|File is not a valid image)"):
            inspect(data[: int(len(data) * fraction)], LIMITS)


def test_a_jpeg_with_an_embedded_thumbnail_and_trailing_bytes_is_whole():
    photo = Image.effect_noise((300, 200), 60).convert("RGB")
    thumb = encode(photo.resize((60, 40)), "JPEG")  # a whole JPEG (SOI..EOI) inside APP1
    data = encode(photo, "JPEG", exif=b"Exif\0\0" + thumb)
    assert thumb in data
    assert inspect(data + b"<html>trailer</html>", LIMITS).format == "JPEG"
    # Cut inside the main picture's scan, after the thumbnail's EOI: still refused.
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        inspect(data[: data.index(thumb) + len(thumb) + 900], LIMITS)


def test_only_the_supported_decoders_open_untrusted_bytes():
    """A TGA file (Pillow has a decoder for it) is never handed to that decoder."""
    data = encode(Image.new("RGB", (100, 100), (1, 2, 3)), "TGA")
    with pytest.raises(InvalidImage, match="^File is not a valid image"):
        inspect(data, LIMITS)
