"""The entry point: options parsing, and cut_out() around a stand-in model output."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from removal.pipeline.cutout import confidence, cut_out
from removal.pipeline.options import InvalidOption, Options
from removal.pipeline.trim import NoForeground
from removal.pipeline.validate import Limits
from tests.helpers import DiscModel

# --- Options -------------------------------------------------------------------------------------


def test_defaults():
    options = Options.parse({})
    assert options == Options()
    assert options.to_dict() == {
        "format": "png", "channels": "rgba", "bg_color": None, "crop": True,
        "crop_margin": "10", "refine": True, "alpha_matting": False,
        "alpha_matting_foreground_threshold": 240, "alpha_matting_background_threshold": 10,
        "alpha_matting_erode_size": 10, "size": "full", "roi": None, "scale": "original",
        "position": "original", "semitransparency": True, "add_shadow": False,
        "decontaminate": True,
    }


def test_form_strings_are_parsed_and_normalised():
    options = Options.parse({
        "format": "WebP", "channels": "alpha", "bg_color": "FFF", "crop": "false",
        "crop_margin": "5 %", "refine": "0", "alpha_matting": "true",
        "alpha_matting_erode_size": "3", "model": "isnet-general-use",
    })
    assert options.to_dict() == {
        "format": "webp", "channels": "alpha", "bg_color": "#ffffff", "crop": False,
        "crop_margin": "5%", "refine": False, "alpha_matting": True,
        "alpha_matting_foreground_threshold": 240, "alpha_matting_background_threshold": 10,
        "alpha_matting_erode_size": 3, "size": "full", "roi": None, "scale": "original",
        "position": "original", "semitransparency": True, "add_shadow": False,
        "decontaminate": True,
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": "gif"}, "format: must be one of png, webp, jpg, zip, auto"),
        ({"channels": "rgb"}, "channels: must be one of rgba, alpha"),
        ({"bg_color": "blue-ish"}, "bg_color: must be a hex colour"),
        ({"crop": "maybe"}, "crop: must be true or false"),
        ({"crop_margin": "501"}, "crop_margin: must be pixels (0-500) or a percentage (0-50%)"),
        ({"crop_margin": "60%"}, "crop_margin: must be pixels (0-500) or a percentage (0-50%)"),
        ({"crop_margin": "-3"}, "crop_margin: must be pixels"),
        ({"refine": 2}, "refine: must be true or false"),
        ({"alpha_matting_erode_size": "x"}, "alpha_matting_erode_size: must be an integer"),
        ({"alpha_matting_foreground_threshold": 256}, "alpha_matting_foreground_threshold:"),
        ({"alpha_matting_background_threshold": 250}, "alpha_matting_background_threshold:"),
    ],
)
def test_invalid_values_name_the_field(raw, message):
    field = next(iter(raw))
    with pytest.raises(InvalidOption) as caught:
        Options.parse(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


# --- process -------------------------------------------------------------------------------------


def photo_bytes(width=400, height=300, fmt="JPEG", **params) -> bytes:
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:, :, 0] = 180
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def run(data: bytes, model=None, **options):
    return cut_out(
        data, segmenter=model or DiscModel(centre=(0.5, 0.5), radius=0.25),
        options=Options(**options), limits=Limits(),
    )


def read(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.data)))


def test_crop_trims_to_the_subject_plus_margin_and_reports_the_box():
    result = run(photo_bytes())
    x0, y0, x1, y1 = result.metrics["bbox"]
    # A disc of radius 0.25 frame at the centre of a 400x300 image.
    assert abs(x0 - 100) <= 2 and abs(x1 - 300) <= 2 and abs(y0 - 75) <= 2 and abs(y1 - 225) <= 2
    assert (result.width, result.height) == (x1 - x0 + 20, y1 - y0 + 20)
    pixels = read(result)
    assert pixels.shape == (result.height, result.width, 4)
    assert pixels[:10, :, 3].max() == 0  # the 10 px padding is transparent
    assert pixels[result.height // 2, result.width // 2, 3] == 255
    assert result.content_type == "image/png" and result.extension == "png"


def test_crop_false_keeps_the_full_frame():
    result = run(photo_bytes(), crop=False)
    assert (result.width, result.height) == (400, 300)
    assert read(result)[0, 0, 3] == 0


def test_bbox_is_in_original_coordinates_after_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 400x300, shown 300x400
    data = photo_bytes(exif=exif.tobytes())
    model = DiscModel(centre=(0.25, 0.25), radius=0.1)
    result = run(data, model=model, crop=False)
    assert (result.width, result.height) == (300, 400)
    x0, y0, x1, y1 = result.metrics["bbox"]
    assert abs((x0 + x1) / 2 - 75) <= 2 and abs((y0 + y1) / 2 - 100) <= 2


def test_empty_result_fails_with_a_clear_message():
    with pytest.raises(NoForeground, match="No foreground found in the image"):
        run(photo_bytes(), model=DiscModel(empty=True))


def test_output_never_carries_exif_or_gps():
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}  # GPS IFD
    data = photo_bytes(exif=exif.tobytes())
    assert b"SecretCam" in data
    for fmt in ("png", "webp"):
        result = run(data, format=fmt)
        assert b"SecretCam" not in result.data and b"Exif" not in result.data
        assert dict(Image.open(io.BytesIO(result.data)).getexif()) == {}


def test_transparent_input_pixels_stay_transparent():
    rgba = np.zeros((300, 400, 4), dtype=np.uint8)
    rgba[:, :] = (180, 0, 0, 255)
    rgba[140:160, 190:210, 3] = 0  # a transparent hole in the middle of the subject
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    result = run(buffer.getvalue(), crop=False)
    alpha = read(result)[:, :, 3]
    assert alpha[150, 200] == 0 and alpha[150, 170] == 255


def test_alpha_channel_webp_and_bg_color_options():
    mask = run(photo_bytes(), channels="alpha", crop=False)
    assert read(mask).shape == (300, 400) and read(mask)[150, 200] == 255
    webp = run(photo_bytes(), format="webp")
    assert webp.data[:4] == b"RIFF" and webp.content_type == "image/webp"
    filled = read(run(photo_bytes(), bg_color="#0000ff", crop=False))
    assert filled.shape == (300, 400, 3)
    assert filled[0, 0].tolist() == [0, 0, 255]


def test_progress_is_reported_in_increasing_steps():
    seen: list[int] = []
    cut_out(photo_bytes(), segmenter=DiscModel(), options=Options(), limits=Limits(),
            on_progress=seen.append)
    assert seen == sorted(seen) and len(seen) >= 3 and 0 < seen[0] and seen[-1] < 100


def test_metrics_have_stage_timings_and_confidence():
    result = run(photo_bytes())
    stages = result.metrics["stage_timings"]
    assert {"decode", "preprocess", "inference", "refine", "trim", "encode"} <= set(stages)
    assert all(value >= 0 for value in stages.values())
    assert 0.9 < result.metrics["confidence"] <= 1.0


def test_confidence_is_the_share_of_decisive_pixels():
    # Decisive: alpha < 0.05 (0..12) or > 0.95 (243..255); 13, 128 and 242 are not.
    alpha = np.array([[0, 12, 13, 128], [242, 243, 255, 255]], dtype=np.uint8)
    assert confidence(alpha) == 0.625
