"""No subject in the model's raw output: the same ``NoForeground`` from every model family.

The tiny models (``tests/tiny_models.py``: a 1x1 convolution over the colour channels, one per
pre/post-processing family) see a subject where the normalised channels sum high (or, for the
inverted ``tiny-birefnet``, low). Each image below holds no pixel the model calls a subject
(raw probability far below 0.5 everywhere) and yet varies, so the min-max stretch that both
QuickBG's ISNet path and rembg's ``predict`` apply would turn it into a full-range mask.
"""

from __future__ import annotations

import numpy as np
import pytest

from removal.pipeline.segment import Segmenter
from removal.pipeline.sessions import RembgSegmenter
from removal.pipeline.trim import NoForeground
from tests.tiny_models import TINY, build


def dark_with_a_red_patch() -> np.ndarray:
    """Black with a pure red patch: red alone sums low after either normalisation, so
    ``tiny-u2net`` (p ~ 0.002) and ``tiny-isnet`` (p ~ 0.12) find no subject in it."""
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[30:90, 50:110, 0] = 255
    return pixels


def white_with_a_grey_patch() -> np.ndarray:
    """White with a light grey patch: for the inverted ``tiny-birefnet`` both are background
    (logits about -29 and -24)."""
    pixels = np.full((120, 160, 3), 255, np.uint8)
    pixels[30:90, 50:110] = 230
    return pixels


def subject() -> np.ndarray:
    """A white square on black: a subject for the bright-subject models."""
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[30:90, 50:110] = 255
    return pixels


def load(name: str, folder):
    engine, session, *_ = TINY[name]
    if engine == "serving-graph":
        path = folder / f"{name}.onnx"
        path.write_bytes(build(name))
        return Segmenter(path, threads=1)
    path = folder / f"{session}.onnx"  # where rembg looks for the session's file
    path.write_bytes(build(name))
    return RembgSegmenter(session, folder, path, threads=1)


@pytest.mark.parametrize(("name", "blank"), [
    ("tiny-isnet", dark_with_a_red_patch),
    ("tiny-u2net", dark_with_a_red_patch),  # rembg session, sigmoid in the graph
    ("tiny-birefnet", white_with_a_grey_patch),  # rembg session, rembg applies the sigmoid
])
def test_no_subject_in_the_raw_output_is_no_foreground_for_every_family(name, blank, tmp_path):
    model = load(name, tmp_path)
    with pytest.raises(NoForeground):
        model.mask(blank())


@pytest.mark.parametrize("name", ["tiny-isnet", "tiny-u2net"])
def test_a_subject_still_gives_its_mask(name, tmp_path):
    mask = load(name, tmp_path).mask(subject())
    assert mask.dtype == np.uint8 and mask.max() >= 254  # truncated like rembg
    full = np.asarray(mask, np.float32)
    if full.shape != (120, 160):  # the serving graph answers at the model's resolution
        import cv2

        full = cv2.resize(full, (160, 120), interpolation=cv2.INTER_LINEAR)
    assert full[40:80, 60:100].min() > 200 and full[:20].max() < 50
