"""remove.bg's output options in the pure pipeline: size, jpg/zip/auto, roi, scale, position, a
background image, and where the subject ends up (``foreground``)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from removal.pipeline.cutout import cut_out
from removal.pipeline.options import InvalidOption, Options
from removal.pipeline.trim import NoForeground
from removal.pipeline.validate import Limits
from tests.helpers import DiscModel


def photo(size=(400, 300), color=(180, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def run(data=None, background=None, model=None, **raw):
    return cut_out(data or photo(), segmenter=model or DiscModel(), limits=Limits(),
                   options=Options.parse(raw), background=background)


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.data)))


def alpha_box(alpha: np.ndarray) -> dict:
    ys, xs = np.nonzero(alpha)
    return {"top": int(ys.min()), "left": int(xs.min()),
            "width": int(xs.max() - xs.min() + 1), "height": int(ys.max() - ys.min() + 1)}


def test_foreground_is_reported_in_result_pixels():
    result = run(crop="false")
    assert result.metrics["foreground"] == alpha_box(pixels(result)[:, :, 3])
    cropped = run(crop_margin="10")
    box = cropped.metrics["foreground"]
    assert (box["top"], box["left"]) == (10, 10)
    assert box == alpha_box(pixels(cropped)[:, :, 3])


@pytest.mark.parametrize("size, most", [("preview", 250_000), ("medium", 1_500_000)])
def test_size_caps_the_megapixels(size, most):
    result = run(photo((2000, 1500)), crop="false", size=size)
    assert result.width * result.height <= most
    assert result.width * result.height > most * 0.98
    assert abs(result.width / result.height - 2000 / 1500) < 0.01
    assert pixels(result).shape[:2] == (result.height, result.width)
    assert result.metrics["foreground"] == alpha_box(pixels(result)[:, :, 3])


def test_full_keeps_the_original_size():
    result = run(photo((800, 600)), crop="false", size="full")
    assert (result.width, result.height) == (800, 600)


def test_jpg_is_opaque_on_white_and_auto_picks_by_transparency():
    jpg = run(crop="false", format="jpg")
    assert jpg.content_type == "image/jpeg" and jpg.data[:3] == b"\xff\xd8\xff"
    image = pixels(jpg)
    assert image.shape == (300, 400, 3)
    assert image[2, 2].min() >= 250  # the transparent corner is white
    assert abs(int(image[150, 200, 0]) - 180) <= 6  # the subject keeps its colour
    assert run(format="auto").extension == "png"
    assert run(format="auto", bg_color="00ff00").extension == "jpg"


def test_zip_holds_color_jpg_and_alpha_png():
    result = run(crop="false", format="zip")
    assert result.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(result.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color = np.asarray(Image.open(io.BytesIO(archive.read("color.jpg"))))
        alpha = np.asarray(Image.open(io.BytesIO(archive.read("alpha.png"))))
    assert color.shape == (300, 400, 3) and alpha.shape == (300, 400)
    assert alpha[150, 200] == 255 and alpha[0, 0] == 0


def test_roi_keeps_only_the_subject_inside_it():
    result = run(crop="false", roi="0% 0% 50% 100%")
    alpha = pixels(result)[:, :, 3]
    assert alpha[150, 150] == 255 and alpha[150, 250] == 0
    assert result.metrics["foreground"]["left"] + result.metrics["foreground"]["width"] <= 200
    pixels_roi = run(crop="false", roi="0 0 200 300")
    assert np.array_equal(pixels(pixels_roi)[:, :, 3], alpha)
    with pytest.raises(NoForeground):
        run(crop="false", roi="0 0 10 10")


def test_scale_fits_the_subject_and_centres_it():
    result = run(crop="false", scale="50%")
    box = result.metrics["foreground"]
    # The disc (about 200x150 of a 400x300 frame) fits in 50 %: 150 px high at most.
    assert 145 <= box["height"] <= 151
    centre = (box["left"] + box["width"] / 2, box["top"] + box["height"] / 2)
    assert abs(centre[0] - 200) <= 2 and abs(centre[1] - 150) <= 2
    assert box == alpha_box(pixels(result)[:, :, 3])


def test_position_moves_the_subject():
    result = run(crop="false", position="0% 100%", model=DiscModel(radius=0.1))
    box = result.metrics["foreground"]
    assert box["left"] == 0 and box["top"] + box["height"] == 300
    centred = run(crop="false", position="center", model=DiscModel(centre=(0.2, 0.2),
                                                                    radius=0.1)).metrics
    fg = centred["foreground"]
    assert abs(fg["left"] + fg["width"] / 2 - 200) <= 2


def test_background_image_fills_the_canvas():
    background = photo((100, 100), color=(0, 0, 250))
    result = run(crop="false", background=background)
    image = pixels(result)
    assert image.shape == (300, 400, 3) and result.extension == "png"
    assert image[0, 0].tolist() == [0, 0, 250]
    assert image[150, 200].tolist() == [180, 40, 40]
    assert run(crop="false", background=background, format="auto").extension == "jpg"


@pytest.mark.parametrize("raw, message", [
    ({"size": "huge"}, "size: must be one of"),
    ({"roi": "1 2 3"}, "roi: must be four values"),
    ({"roi": "0 0 101% 10"}, "roi: each value"),
    ({"scale": "5%"}, "scale: must be 'original' or a percentage from 10% to 100%"),
    ({"position": "left"}, "position: must be"),
])
def test_bad_values_name_the_field(raw, message):
    with pytest.raises(InvalidOption, match=message):
        Options.parse(raw)


def test_undefined_and_empty_values_are_not_given():
    assert Options.parse({"size": "undefined", "roi": "", "scale": None,
                          "format": "undefined"}) == Options()
    assert Options.parse({"format": "jpeg"}).format == "jpg"
