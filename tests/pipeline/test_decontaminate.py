"""Colour decontamination on composites with a known alpha, alone and inside cut_out()."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from removal.pipeline import encode
from removal.pipeline.cutout import cut_out
from removal.pipeline.decontaminate import OPAQUE_FROM, decontaminate
from removal.pipeline.options import Options
from removal.pipeline.validate import Limits
from tests.helpers import DiscModel

RED = (200, 40, 40)
WHITE = (255, 255, 255)


def soft_disc(width: int, height: int, rim: float, radius: float | None = None) -> np.ndarray:
    """A centred disc of alpha 255 whose edge ramps to 0 over ``rim`` pixels (uint8)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot(xx + 0.5 - width / 2, yy + 0.5 - height / 2)
    radius = min(width, height) / 3 if radius is None else radius
    return np.round(np.clip((radius - distance) / rim + 0.5, 0, 1) * 255).astype(np.uint8)


def composite(foreground, alpha: np.ndarray, background) -> np.ndarray:
    """``a F + (1 - a) B`` in 8 bits: what a camera sees of a foreground over a background."""
    height, width = alpha.shape
    f = np.broadcast_to(np.asarray(foreground, np.float32), (height, width, 3))
    b = np.broadcast_to(np.asarray(background, np.float32), (height, width, 3))
    a = alpha.astype(np.float32)[:, :, None] / 255
    return np.round(a * f + (1 - a) * b).astype(np.uint8)


def gradient(width: int, height: int) -> np.ndarray:
    """A textured old background: a blue-to-yellow ramp across the frame."""
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to((1 - t) * np.array([30, 60, 220]) + t * np.array([240, 220, 40]),
                           (height, width, 3))


def red_like(image: np.ndarray) -> np.ndarray:
    """The true foreground: red everywhere, the shape of ``image``."""
    return np.ascontiguousarray(np.broadcast_to(np.array(RED, np.uint8), image.shape))


def band_error(rgb: np.ndarray, alpha: np.ndarray, truth) -> float:
    """Mean |colour - true foreground colour| over the pixels with 0 < alpha < 1 (levels)."""
    band = (alpha > 0) & (alpha < OPAQUE_FROM)
    return float(np.abs(rgb[band].astype(np.float32) - np.asarray(truth, np.float32)).mean())


@pytest.mark.parametrize("background", ["white", "gradient"])
@pytest.mark.parametrize("size", [(400, 300), (3000, 2000)])  # 6 MP works on a smaller copy
def test_decontaminated_edge_is_the_foreground_colour_the_plain_one_is_not(size, background):
    width, height = size
    alpha = soft_disc(width, height, rim=width / 50)
    old = WHITE if background == "white" else gradient(width, height)
    image = composite(RED, alpha, old)

    cleaned = decontaminate(image, alpha)

    assert band_error(image, alpha, RED) > 40  # today: the old background shows through
    assert band_error(cleaned, alpha, RED) < 12
    # What a viewer sees: the cut-out over black, against the true red subject over black.
    truth = encode.on_color(red_like(image), alpha, (0, 0, 0)).astype(np.int16)
    band = (alpha > 0) & (alpha < 255)
    plain = encode.on_color(image, alpha, (0, 0, 0)).astype(np.int16)
    ours = encode.on_color(cleaned, alpha, (0, 0, 0)).astype(np.int16)
    assert np.abs(ours - truth)[band].mean() < 0.25 * np.abs(plain - truth)[band].mean()


def test_opaque_and_transparent_pixels_keep_their_colour():
    alpha = soft_disc(300, 200, rim=12)
    image = composite(RED, alpha, gradient(300, 200))
    cleaned = decontaminate(image, alpha)
    kept = (alpha == 0) | (alpha >= OPAQUE_FROM)
    assert np.array_equal(cleaned[kept], image[kept])
    assert not np.array_equal(cleaned, image)


def test_a_hard_mask_is_returned_as_it_is_and_in_place_changes_the_array():
    hard = np.where(soft_disc(120, 90, rim=1) > 127, 255, 0).astype(np.uint8)
    image = composite(RED, hard, WHITE)
    assert decontaminate(image, hard) is image

    alpha = soft_disc(120, 90, rim=8)
    image = composite(RED, alpha, WHITE)
    before = image.copy()
    copy = decontaminate(image, alpha)
    assert np.array_equal(image, before) and copy is not image
    same = decontaminate(image, alpha, in_place=True)
    assert same is image and np.array_equal(image, copy)


# --- inside cut_out --------------------------------------------------------------------------


def red_disc_photo(size=(400, 400)) -> tuple[bytes, np.ndarray]:
    """A PNG of a red disc with a soft rim on white, and its pixels. The stand-in model's soft
    disc (``DiscModel(radius=0.3, edge=0.08)``) lies on its rim."""
    width, height = size
    alpha = soft_disc(width, height, rim=width * 0.08, radius=width * 0.3)
    pixels = composite(RED, alpha, WHITE)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), pixels


def run(data: bytes, **options):
    model = DiscModel(radius=0.3, edge=0.08)
    result = cut_out(data, segmenter=model, options=Options.parse(options), limits=Limits())
    return result, np.asarray(Image.open(io.BytesIO(result.data)))


def test_cut_out_decontaminates_by_default_and_false_gives_the_plain_bytes():
    data, photo = red_disc_photo()
    ours, rgba = run(data, crop="false")
    plain, plain_rgba = run(data, crop="false", decontaminate="false")
    alpha = rgba[:, :, 3]
    assert np.array_equal(alpha, plain_rgba[:, :, 3])
    band = (alpha > 0) & (alpha < OPAQUE_FROM)
    assert band.sum() > 1000

    # Off: exactly today's output, the photo's own colours under the mask.
    assert plain.data == encode.encode_png(encode.cutout(photo, alpha))
    # On: the rim is red, not the pink of red over white; only the band changed.
    assert band_error(plain_rgba[:, :, :3], alpha, RED) > 40
    assert band_error(rgba[:, :, :3], alpha, RED) < 0.5 * band_error(plain_rgba[:, :, :3],
                                                                     alpha, RED)
    assert np.array_equal(rgba[~band], plain_rgba[~band])
    assert "decontaminate" in ours.metrics["stage_timings"]
    assert "decontaminate" not in plain.metrics["stage_timings"]


def test_background_replacement_is_decontaminated_and_false_is_todays_composite():
    data, photo = red_disc_photo()
    ours, on_black = run(data, crop="false", bg_color="000000")
    plain, plain_black = run(data, crop="false", bg_color="000000", decontaminate="false")
    mask, _ = run(data, crop="false", channels="alpha")
    alpha = np.asarray(Image.open(io.BytesIO(mask.data)))
    assert plain.data == encode.encode_png(encode.on_color(photo, alpha, (0, 0, 0)))
    truth = encode.on_color(red_like(photo), alpha, (0, 0, 0)).astype(np.int16)
    band = (alpha > 0) & (alpha < OPAQUE_FROM)
    halo = np.abs(plain_black.astype(np.int16) - truth)[band].mean()
    assert halo > 10  # the white of the old background, lighting the rim
    assert np.abs(on_black.astype(np.int16) - truth)[band].mean() < 0.5 * halo


def test_mask_only_output_is_not_touched():
    data, _ = red_disc_photo((200, 200))
    on, _ = run(data, channels="alpha")
    off, _ = run(data, channels="alpha", decontaminate="false")
    assert on.data == off.data and "decontaminate" not in on.metrics["stage_timings"]


def test_a_crop_view_is_written_through_in_place_and_a_read_only_array_is_copied():
    alpha = soft_disc(300, 200, rim=12)
    photo = composite(RED, alpha, gradient(300, 200))
    wanted = decontaminate(photo[20:180, 30:270].copy(), alpha[20:180, 30:270].copy())

    frame = photo.copy()
    view = frame[20:180, 30:270]  # the pipeline's crop: rows padded by the frame around it
    same = decontaminate(view, alpha[20:180, 30:270], in_place=True)
    assert np.shares_memory(same, frame) and np.array_equal(same, wanted)
    assert np.array_equal(frame[20:180, 30:270], wanted)
    assert np.array_equal(frame[:20], photo[:20]) and np.array_equal(frame[:, :30], photo[:, :30])

    frozen = photo.copy()
    frozen.flags.writeable = False
    copy = decontaminate(frozen, alpha, in_place=True)
    assert copy is not frozen and np.array_equal(frozen, photo)
    assert np.array_equal(copy, decontaminate(photo, alpha))
