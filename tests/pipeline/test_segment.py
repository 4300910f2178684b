"""Segment: our pre/post-processing against rembg's arithmetic, session reuse, ORT options."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from removal.pipeline import graph, segment
from removal.pipeline.segment import INPUT_SIZE, postprocess, preprocess, session_options
from tests.images import FIXTURES


def photo(width=640, height=480) -> np.ndarray:
    """A real photo (a shared fixture) at the given size."""
    image = Image.open(FIXTURES / "animal-2.jpg").convert("RGB")
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))


def rembg_normalize(rgb: np.ndarray) -> np.ndarray:
    """rembg's BaseSession.normalize for ISNet, copied: LANCZOS, /max, -0.5, float64."""
    im = np.array(Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.LANCZOS))
    im = im / max(np.max(im), 1e-6)
    return (im - 0.5).transpose((2, 0, 1))[None].astype(np.float32)


@pytest.mark.parametrize("size", [(640, 480), (2000, 1500)])
def test_preprocess_matches_rembg_normalisation(size):
    rgb = photo(*size)
    ours, theirs = preprocess(rgb), rembg_normalize(rgb)
    assert ours.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and ours.dtype == np.float32
    assert ours.min() >= -0.5 and ours.max() <= 0.5
    # cv2 cubic/area against PIL LANCZOS: < 1/255 on average.
    assert np.abs(ours - theirs).mean() < 1 / 255


def test_preprocess_divides_by_the_image_maximum_like_rembg():
    rgb = np.full((1100, 1100, 3), 100, dtype=np.uint8)
    rgb[:550] = 50
    tensor = preprocess(rgb)
    assert tensor[0, 0, 0, 0] == pytest.approx(50 / 100 - 0.5)
    assert tensor[0, 2, -1, -1] == pytest.approx(0.5)


def test_postprocess_stretches_to_full_range_and_truncates_like_rembg():
    raw = np.linspace(-2, 3, INPUT_SIZE * INPUT_SIZE, dtype=np.float32).reshape(1, 1, 1024, 1024)
    mask = postprocess(raw)
    pred = (raw[0, 0] - raw.min()) / (raw.max() - raw.min())
    assert mask.dtype == np.uint8
    assert mask.min() == 0 and mask.max() == 255
    assert np.abs(mask.astype(int) - (pred * 255).astype(np.uint8)).max() <= 1


def test_session_options_take_the_thread_count_keep_the_arena_and_drop_the_pattern():
    opts = session_options(3)
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.enable_cpu_mem_arena is True
    assert opts.enable_mem_pattern is False


@pytest.mark.model
def test_the_segmenter_is_created_once_per_process(segmenter):
    again = segment.get_segmenter(segmenter.model_path, 2)
    assert again is segmenter
    assert segmenter.inner is segmenter.session.inner_session  # rembg's wrapper, same session
    assert segmenter.session is segmenter.session
    assert segmenter.inner.get_session_options().intra_op_num_threads == 2
    assert segmenter.inner.get_modelmeta().custom_metadata_map["quickbg.serving_graph"] == str(
        graph.VERSION)  # it runs the serving graph, not the shipped file


@pytest.mark.model
def test_real_model_finds_a_bright_subject_on_dark_background(segmenter):
    rgb = np.full((300, 400, 3), 20, dtype=np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    rgb[(xx - 200) ** 2 + (yy - 150) ** 2 < 80**2] = (230, 180, 40)
    mask = segment.upscale(postprocess(segmenter.run(preprocess(rgb))), 400, 300)
    assert mask.shape == (300, 400)
    assert mask[150, 200] > 200  # centre of the disc
    assert mask[10, 10] < 30  # corner


@pytest.mark.model
def test_a_model_run_is_stopped_at_its_timeout(segmenter):
    tensor = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    started = time.perf_counter()
    with pytest.raises(segment.InferenceTimeout, match="exceeded"):
        segmenter.run(tensor, timeout=0.05)
    assert time.perf_counter() - started < 2.0  # a full run takes ~2.7 s or more
    assert segmenter.run(tensor, timeout=600).shape == (1, 1, INPUT_SIZE, INPUT_SIZE)
