"""Colour decontamination: the foreground's own colour where the alpha is fractional.

Where 0 < alpha < 1 a photo's pixel is a mix, ``I = a F + (1 - a) B``, of the subject's colour
``F`` and the old background's ``B``. A cut-out that keeps ``I`` as its colour brings ``B`` along:
composited on a new background it shows a fringe of the old one (a light halo on dark
backgrounds). ``decontaminate(rgb, alpha)`` replaces the colour of those pixels (and only
those) by an estimate of ``F``; opaque and fully transparent pixels are returned unchanged.

The estimate is blur fusion (M. Forte, "Approximate Fast Foreground Colour Estimation", ICIP
2021; the reference code is github.com/Photoroom/fast-foreground-estimation): the mean colour
of the nearby foreground, ``blur(F a) / blur(a)``, and of the nearby background, ``blur(B (1 - a)) /
blur(1 - a)``, then the pixel's own residual, ``I - a F' - (1 - a) B'``, given to the foreground
in proportion to ``a``; run twice, a wide box (``RADIUS_WIDE`` = 90 px) seeded with the image,
then a narrow one (``RADIUS_NARROW`` = 6 px) seeded with the first pass. Box filters only:
OpenCV's ``cv2.blur`` costs the same for any radius.

Why blur fusion and not pymatting's ``estimate_foreground_ml`` (the multi-level solver rembg
already depends on), on ``bench/edges.py``'s composition set (known soft alpha; mean colour
error in the edge band, 8-bit levels; all figures in ``bench/README.md``): at 1 MP, soft
outlines and hair, today's cut-out 17.35, this 6.23 (0.36x), pymatting 4.71 (0.27x); at 12 MP
18.20 -> 6.40 (0.35x). pymatting is a little better, but it solves over every pixel of the
image in float64: 0.8-1.2 s at 1 MP on these 2-core machines and 13.4 s on one 12 MP
composite (timed once, under load), more than the model run, against a few percent of it
here. pymatting ships no blur fusion (1.1.16 has ``estimate_foreground_ml`` and
``estimate_foreground_cf`` only), so it is written here, on OpenCV's box filters. Where no
local estimate can work, a wide uniform veil (alpha 0.45 over a large area), it removes about
40 % of the error (22.3 -> 13.2; pymatting 8.0).

Departures from the paper, each measured on that set: pass 1 weights the means by ``a ** 4`` and
``(1 - a) ** 4`` (the colour of nearly opaque subject and nearly clear background, not of the
mixed rim) and sums boxes of 90, 360 and 1440 px (weights 1, 0.1, 0.01) so that a pixel deep in
a wide soft area still finds clear background; pass 2 keeps pass 1's background mean. At 1 MP
the paper's algorithm as published scores 7.09 on outlines and hair and 17.57 with veils.

Keeping the cost small at 12 MP (the paper's algorithm over a whole 12 MP image took 12.1 s,
timed once under the same load):

* only the box around the edge band (1 <= alpha <= 247; above that counts as opaque, see
  ``OPAQUE_FROM``), widened by the wide radius, is worked on;
* the two passes run on that box at full resolution up to ``FULL_RES_PIXELS``, else on a copy
  shrunk by a whole factor to at most ``WORK_PIXELS``, where the radii are meant (the paper's,
  for images of about a megapixel); the wide pass runs on a further ``WIDE_STEP`` times smaller
  copy, since a 90 px box mean changes little from pixel to pixel;
* the final step, ``F = F' + a (I - a F' - (1 - a) B')``, runs at full resolution on the band's
  pixels only, reading ``F'`` and ``B'`` (smooth by construction) bilinearly from the working
  copy: the subject's fine detail comes from the photo itself, ``I``;
* the band's pixels are read and written by flat index (``np.flatnonzero`` of the band, then
  ``take``/``put`` of whole 3-byte pixels) through a raveled view of the image that runs over
  the rows' padding, so the pipeline's crop (a view of the decoded photo) needs no contiguous
  copy; alpha multiplies colour as an array of the same shape (numpy broadcasting over a last
  axis of 3 is several times slower), and new buffers are few and int32 where they can be
  (the worker hands large blocks back to the OS, so every new one costs page faults).

Its cost inside ``cut_out`` next to the model run of the same runs, on a 12 MP photo's own
ISNet edge band (685k pixels; ``bench/edges.py --sizes 12mp --cost-only``, figures in
``bench/README.md``): 0.11-0.14 s of CPU time, 2.9-3.6 % of the model's (3.6-3.7 % of the wall
time at load average 5-6 on the shared 2-core machine); before the flat-index reads and writes
above, 6.6 % (7.2 % of the wall time). On a ~1 MP photo about 3 %.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

# Alpha from here up counts as opaque and keeps the photo's colour: ISNet's interior is 254,
# not 255, and the old background shows there by at most 7/255 of its difference.
OPAQUE_FROM = 248
RADIUS_WIDE = 90
# Pass 1's departures from the paper (measured by bench/edges.py, see the module docstring):
SHARPEN = 4.0
WIDE_LEVELS = ((RADIUS_WIDE, 1.0), (4 * RADIUS_WIDE, 0.1), (16 * RADIUS_WIDE, 0.01))
RADIUS_NARROW = 6
FULL_RES_PIXELS = 1_000_000
WORK_PIXELS = 500_000
WIDE_STEP = 8
EPSILON = 1e-5
ROW = 4096


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8) with the colour under fractional ``alpha`` (H x W uint8)
    replaced by the estimated foreground colour: a new array, or with ``in_place`` ``rgb``
    itself changed (also a view such as the pipeline's crop: it is written through)."""
    band = cv2.inRange(alpha, 1, OPAQUE_FROM - 1)
    # The band's pixels as flat row-major indices: a boolean flatnonzero is several times
    # faster than cv2.findNonZero's (x, y) pairs at 12 MP.
    flat = np.flatnonzero(band.view(bool))
    del band
    count = len(flat)
    if not count:
        return rgb
    height, width = alpha.shape
    # int32 (12 MP has 2**24 pixels; 2**31 would be a 46k x 46k image): half the memory, and
    # every new buffer costs page faults (the worker gives large blocks back to the OS).
    ys = np.empty(count, np.int32)
    np.floor_divide(flat, width, out=ys, casting="unsafe")
    xs = np.multiply(ys, width)
    np.subtract(flat, xs, out=xs, casting="unsafe")
    x, y = int(xs.min()), int(ys[0])
    w, h = int(xs.max()) - x + 1, int(ys[-1]) - y + 1
    # 1 (full resolution), or how many times smaller the working copy is.
    step = 1 if w * h <= FULL_RES_PIXELS else math.ceil(math.sqrt(w * h / WORK_PIXELS))
    pad = RADIUS_WIDE * step
    x0, y0 = max(0, x - pad), max(0, y - pad)
    # Whole multiples of ``step``, for an exact shrink.
    x1 = x0 + (min(width, x + w + pad) - x0) // step * step
    y1 = y0 + (min(height, y + h + pad) - y0) // step * step
    foreground, background = _blur_fusion(rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1], step)

    grid = _grid(xs, ys, x0, y0, step)
    f, b = _sample(foreground, grid, count), _sample(background, grid, count)
    del foreground, background, grid
    out = rgb if in_place and rgb.flags.writeable else rgb.copy()
    pixels, row = _raveled(out, 3)
    if pixels is None:  # strides a raveled view cannot follow (never the pipeline's arrays)
        out = rgb.copy()
        pixels, row = _raveled(out, 3)
    alphas, alpha_row = _raveled(alpha, 1)
    if alphas is None:
        alphas, alpha_row = _raveled(np.ascontiguousarray(alpha), 1)
    alpha_index = None if alpha_row == row else _index(flat, ys, alpha_row - width, xs)
    index = _index(flat, ys, row - width, xs, in_place=True)
    alpha_index = index if alpha_index is None else alpha_index
    a = alphas.take(alpha_index).astype(np.float32)
    a *= 1 / 255
    a = _channels(a)
    image = pixels.take(index).view(np.uint8).reshape(-1, 3).astype(np.float32)
    # F = f + a (I - b - a (f - b)), in place (each pass is over every band pixel).
    image -= b  # I - b
    np.subtract(f, b, out=b)
    b *= a
    image -= b
    image *= a
    image += f
    image += 0.5
    np.clip(image, 0, 255, out=image)
    np.put(pixels, index, image.astype(np.uint8).view(pixels.dtype).reshape(-1))
    return out


def _index(flat: np.ndarray, ys: np.ndarray, padding: int, spare: np.ndarray, *,
           in_place: bool = False) -> np.ndarray:
    """Flat indices into a raveled view whose rows are ``padding`` items longer than the
    image's, ``flat + ys * padding``: with ``in_place`` written into ``flat`` itself. ``spare``
    (an int32 array as long) is overwritten."""
    if not padding:
        return flat
    np.multiply(ys, padding, out=spare)
    return np.add(flat, spare, out=flat if in_place else None)


def _raveled(pixels: np.ndarray, channels: int) -> tuple[np.ndarray | None, int]:
    """``pixels`` (H x W, or H x W x ``channels``, uint8) as one flat array of whole pixels
    (1-D, ``V<channels>``) running through the rows' padding when it is a view of a wider array,
    and the pixels per row of it: pixel (y, x) is item ``y * row + x``. Reading and writing a
    12 MP image's band by flat index is several times faster than by (row, column) pairs, and it
    needs no contiguous copy of the image. ``(None, 0)`` when the strides do not allow it."""
    height, width = pixels.shape[:2]
    strides = pixels.strides
    inner = (1,) if channels == 1 else (channels, 1)
    if strides[1:] != inner or strides[0] < 0 or strides[0] % channels:
        return None, 0
    row = strides[0] // channels
    items = pixels if channels == 1 else pixels.view(f"V{channels}")[:, :, 0]
    return as_strided(items, shape=((height - 1) * row + width,), strides=(channels,)), row


def _channels(plane: np.ndarray) -> np.ndarray:
    """``plane`` (N, or H x W, float32) repeated over the three colour channels (N x 3 or
    H x W x 3): numpy broadcasting over a last axis of 3 runs several times slower than
    element-wise arithmetic on two arrays of the same shape."""
    return cv2.merge([plane, plane, plane]).reshape(*plane.shape, 3)


def _grid(xs: np.ndarray, ys: np.ndarray, x0: int, y0: int, step: int) -> list[np.ndarray]:
    """``cv2.remap`` maps that read the working copy at the pixel centres ``xs``, ``ys`` (full
    resolution). remap takes at most 32767 columns, so the N points go in rows of ``ROW``."""
    count = len(xs)
    rows = -(-count // ROW)
    maps = []
    for values, origin in ((xs, x0), (ys, y0)):
        grid = np.empty((rows, ROW), np.float32)
        points = grid.reshape(-1)
        points[count:] = 0
        # (v - origin + 0.5) / step - 0.5
        np.multiply(values, np.float32(1 / step), out=points[:count], casting="unsafe")
        points[:count] += np.float32((0.5 - origin) / step - 0.5)
        maps.append(grid)
    return maps


def _sample(image: np.ndarray, grid: list[np.ndarray], count: int) -> np.ndarray:
    """Bilinear reads of ``image`` (H x W x 3) at the ``count`` points of ``grid`` (N x 3)."""
    read = cv2.remap(image, *grid, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return read.reshape(-1, 3)[:count]


def _blur_fusion(rgb: np.ndarray, alpha: np.ndarray, step: int):
    """Both passes on the working copy (``rgb``/``alpha`` shrunk ``step`` times): the smooth
    foreground and background estimates ``F'``, ``B'`` (float32, 8-bit levels) of the last pass.
    In place where it can: each new 12 MP-sized buffer costs page faults."""
    if step > 1:
        # Bilinear, not area: it reads a few pixels of each step x step block instead of all,
        # and on bench/edges.py's 12 MP set it was no worse (edge error 6.73 against 7.32).
        size = (rgb.shape[1] // step, rgb.shape[0] // step)
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)
    image = rgb.astype(np.float32)
    a = alpha.astype(np.float32)
    a *= 1 / 255
    a3 = _channels(a)

    f_wide, b_wide, scratch = _wide_means(image, a)
    # Pass 1's estimate, f + a (I - a f - (1 - a) b) = f + a (I - b - a (f - b)), in ``image``:
    image -= b_wide
    np.subtract(f_wide, b_wide, out=scratch)
    scratch *= a3
    image -= scratch
    image *= a3
    image += f_wide
    np.clip(image, 0, 255, out=image)
    # Pass 2's foreground mean, weighted by a. Its background mean is pass 1's: the narrow
    # re-blur of it changed the error on bench/edges.py's set by less than 0.01 levels.
    kernel = (RADIUS_NARROW, RADIUS_NARROW)
    image *= a3
    f_narrow = cv2.blur(image, kernel, dst=scratch)
    norm = cv2.blur(a, kernel)
    norm += EPSILON
    np.divide(1, norm, out=norm)
    f_narrow *= _channels(norm)
    return f_narrow, b_wide


def _wide_means(image: np.ndarray, a: np.ndarray):
    """The first pass's means of the nearby foreground and background colour, weighted by
    ``a ** SHARPEN`` and ``(1 - a) ** SHARPEN`` and summed over ``WIDE_LEVELS`` (box, weight),
    computed ``WIDE_STEP`` times smaller and scaled back up; and a spare buffer the size of
    ``image``."""
    height, width = a.shape
    step = WIDE_STEP if min(height, width) >= 4 * WIDE_STEP else 1
    size = (max(1, round(width / step)), max(1, round(height / step)))

    def shrink(plane):
        return cv2.resize(plane, size, interpolation=cv2.INTER_AREA) if step > 1 else plane.copy()

    weight_f = cv2.pow(a, SHARPEN)
    weight_b = cv2.pow(1 - a, SHARPEN)
    scratch = np.multiply(image, _channels(weight_f))
    planes = [shrink(scratch)]
    np.multiply(image, _channels(weight_b), out=scratch)
    planes += [shrink(scratch), shrink(weight_f), shrink(weight_b)]
    sums = [np.zeros_like(x) for x in planes]
    for box, level_weight in WIDE_LEVELS:
        kernel = (max(1, round(box / step)),) * 2
        for total, plane in zip(sums, planes, strict=True):
            total += level_weight * cv2.blur(plane, kernel)
    sum_f, sum_b, sum_wf, sum_wb = sums
    f_wide = sum_f / (sum_wf[:, :, None] + EPSILON)
    b_wide = sum_b / (sum_wb[:, :, None] + EPSILON)
    if step > 1:
        f_wide = cv2.resize(f_wide, (width, height), interpolation=cv2.INTER_LINEAR)
        b_wide = cv2.resize(b_wide, (width, height), interpolation=cv2.INTER_LINEAR)
    return f_wide, b_wide, scratch
