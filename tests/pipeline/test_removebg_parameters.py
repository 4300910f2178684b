"""The pure pieces behind remove.bg's parameters (issue 24): colours with alpha, CSS margins,
px in roi, the empty-cut-out check, semitransparency=false, the shadow and the ZIP's colours."""

from __future__ import annotations

import numpy as np
import pytest

from removal.pipeline import encode, refine, segment, shadow, trim
from removal.pipeline.cutout import cut_out
from removal.pipeline.options import InvalidOption, Options
from removal.pipeline.validate import Limits
from tests.helpers import DiscModel
from tests.images import make_image


@pytest.mark.parametrize("text, rgba", [
    ("81d4fa77", (0x81, 0xD4, 0xFA, 0x77)), ("#81D4FA", (0x81, 0xD4, 0xFA, 255)),
    ("fff", (255, 255, 255, 255)), ("0f08", (0, 255, 0, 0x88)),
    ("green", (0, 128, 0, 255)), ("DarkSlateGray", (47, 79, 79, 255)),
])
def test_parse_color_takes_hex_with_alpha_and_names(text, rgba):
    assert encode.parse_color(text) == rgba


@pytest.mark.parametrize("text", ["12345", "81d4fa7", "blue-ish", "", "#"])
def test_parse_color_refuses_the_rest(text):
    with pytest.raises(ValueError):
        encode.parse_color(text)


def test_options_normalise_the_new_forms():
    options = Options.parse({"bg_color": "81D4FA77", "roi": "10px 20PX 50% 300px",
                             "crop_margin": "10px 5 %", "semitransparency": "false",
                             "add_shadow": "true"})
    assert (options.bg_color, options.roi, options.crop_margin) == (
        "#81d4fa77", "10 20 50% 300", "10 5%")
    assert options.semitransparency is False and options.add_shadow is True
    assert Options.parse({"bg_color": "green"}).bg_color == "#008000"
    with pytest.raises(InvalidOption, match="crop_margin"):
        Options.parse({"crop_margin": "1 2 3"})
    with pytest.raises(InvalidOption, match="crop_margin"):
        Options.parse({"crop_margin": "10px 600px"})  # QuickBG's API refuses past the cap


def test_margins_follow_css_order():
    margins = trim.Margins.parse("1 2 3 4")
    assert trim.padded_box((10, 10, 20, 20), 100, 100, margins) == (6, 9, 22, 23)
    assert trim.padded_box((10, 10, 20, 20), 100, 100, trim.Margins.parse("1 2")) == (
        8, 9, 22, 21)
    assert trim.padded_box((10, 10, 30, 50), 100, 100, trim.Margins.parse("10% 50%")) == (
        0, 6, 40, 54)


def test_a_blank_images_faint_output_has_no_foreground():
    rng = np.random.default_rng(0)
    faint = rng.uniform(0, 0.05, (1, 1, 1024, 1024)).astype(np.float32)
    assert not segment.has_foreground(faint)
    faint[0, 0, 500:510, 500:510] = 0.98
    assert segment.has_foreground(faint)
    model = DiscModel()
    model.output[:] = faint * 0 + 0.03
    with pytest.raises(trim.NoForeground):
        cut_out(make_image("PNG", size=(200, 150), color=(255, 255, 255)), segmenter=model,
                options=Options.parse({}), limits=Limits())


def test_solidify_makes_the_inside_opaque_and_keeps_the_rim_and_holes():
    alpha = np.zeros((100, 100), np.uint8)
    alpha[20:80, 20:80] = 255
    alpha[40:60, 40:60] = 120  # glass
    alpha[45:55, 25:30] = 0  # a hole the model saw through
    alpha[20, 20:80] = 60  # a soft rim
    solid = refine.solidify(alpha)
    assert solid[50, 50] == 255 and solid[45:55, 25:30].max() == 0
    assert solid[20, 50] == 60  # the rim keeps its value
    assert np.array_equal(solid > 0, alpha > 0)


def test_contact_shadow_follows_the_subject_box():
    for scale in (1, 4):
        alpha = np.zeros((300 * scale, 400 * scale), np.uint8)
        alpha[75 * scale:225 * scale, 100 * scale:300 * scale] = 255
        under = shadow.contact_shadow(alpha)
        assert under.shape == alpha.shape and under.max() <= 128
        below, above = under[227 * scale, 200 * scale], under[73 * scale, 200 * scale]
        assert below > above > 0  # moved down
        assert under[2, 2] == 0
        reach = shadow.reach((100 * scale, 75 * scale, 300 * scale, 225 * scale))
        assert under[225 * scale + reach + 1:, 200 * scale].max() <= 2  # reach covers it
    assert shadow.contact_shadow(np.zeros((10, 10), np.uint8)) is None


def test_translucent_colour_and_shadow_give_straight_rgba():
    rgb = np.full((20, 20, 3), 200, np.uint8)
    alpha = np.zeros((20, 20), np.uint8)
    alpha[5:15, 5:15] = 255
    out = encode.build(rgb, alpha, channels="rgba", bg_color="#ff000080")
    assert out.shape == (20, 20, 4)
    assert out[0, 0].tolist() == [255, 0, 0, 128] and out[10, 10].tolist() == [200, 200, 200, 255]
    under = np.full((20, 20), 128, np.uint8)
    shaded = encode.build(rgb, alpha, channels="rgba", bg_color=None, shadow=under)
    assert shaded[0, 0].tolist() == [0, 0, 0, 128]
    on_white = encode.build(rgb, alpha, channels="rgba", bg_color="#ffffff", shadow=under)
    assert on_white.shape == (20, 20, 3) and on_white[0, 0].tolist() == [127, 127, 127]


def test_spread_colors_fill_the_transparent_part_with_the_subjects_colours():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:] = (0, 255, 0)  # the old background
    rgb[20:40, 20:40] = (200, 50, 10)
    alpha = np.zeros((64, 64), np.uint8)
    alpha[20:40, 20:40] = 255
    filled = encode.spread_colors(rgb, alpha)
    assert np.array_equal(filled[20:40, 20:40], rgb[20:40, 20:40])
    assert np.abs(filled[0, 0].astype(int) - (200, 50, 10)).max() <= 2
    assert filled[:, :, 1].max() <= 60  # no green anywhere
