"""Tests for tfsp.postprocess.dense: exact geometry of map -> original image resampling."""

import numpy as np
import pytest

from tfsp.postprocess.dense import decode_depth, decode_semantic, resample_to_image
from tfsp.runtime.preprocess import Letterbox, ResizeMode, fit_letterbox
from tfsp.structures import DenseKind

# A 100 x 60 (W x H) image letterboxed into a 64 px input: content 64 x 38 at the top-left
# (scale_x = 0.64, scale_y = 38 / 60); maps of 16 x 16 cells, 4 input pixels each.
HEIGHT, WIDTH, SIZE, CELLS = 60, 100, 64, 16
STRIDE = SIZE // CELLS


@pytest.fixture()
def letterbox() -> Letterbox:
    box = fit_letterbox(HEIGHT, WIDTH, SIZE, ResizeMode.LETTERBOX)
    assert (box.scale_x, box.scale_y, box.pad_x, box.pad_y) == (0.64, 38 / 60, 0.0, 0.0)
    return box


def _region_logits() -> np.ndarray:
    """Logits constant per input region: content (rows < 38 px) left of x = 32 px label 2, right of
    it label 1, letterbox padding label 0 (background); each winning logit is 5, the others 0."""
    logits = np.zeros((CELLS, CELLS, 3), np.float32)
    rows, cols = np.mgrid[0:CELLS, 0:CELLS]
    content = (rows + 0.5) * STRIDE < 38  # cells 0..8; cell 9 (centre 38) is padding
    logits[..., 0] = np.where(content, 0.0, 5.0)
    logits[..., 1] = np.where(content & ((cols + 0.5) * STRIDE > 32), 5.0, 0.0)
    logits[..., 2] = np.where(content & ((cols + 0.5) * STRIDE < 32), 5.0, 0.0)
    return logits


def test_region_labels_land_on_the_right_original_pixels(letterbox):
    labels = decode_semantic(_region_logits(), letterbox, SIZE, HEIGHT, WIDTH).values
    assert labels.shape == (HEIGHT, WIDTH) and labels.dtype == np.int32
    # Columns: cell coordinate (x + 0.5) * 0.64 / 4 - 0.5 passes 7.5 (midway between cell 7, label 2,
    # and cell 8, label 1) between x = 49 (7.42) and x = 50 (7.58): input x = 32 is original x = 50.
    assert np.all(labels[:54, :50] == 2) and np.all(labels[:54, 50:] == 1)
    # Rows: (y + 0.5) * (38 / 60) / 4 - 0.5 stays <= 8 (content cells only) up to y = 53; the last
    # cell row 9 (centre at input y = 38, the padding edge) takes over past 8.5: y = 56 -> 8.45
    # keeps the foreground, y = 57 -> 8.60 is background (the bottom original rows share a cell
    # with the padding). (Near x = 50 on row 56 the two foreground labels split their logit, so
    # background wins there: only columns whose two cells agree are checked.)
    assert np.all(labels[56, :44] == 2) and np.all(labels[56, 56:] == 1)
    assert np.all(labels[57:] == 0)


def test_linear_map_is_sampled_at_each_pixel_centre(letterbox):
    """A map equal to its column index j: bilinear sampling returns the cell coordinate exactly."""
    ramp = np.tile(np.arange(CELLS, dtype=np.float32), (CELLS, 1))
    depth = decode_depth(ramp[..., None], letterbox, SIZE, HEIGHT, WIDTH)
    assert depth.kind is DenseKind.DEPTH and depth.values.shape == (HEIGHT, WIDTH)
    # Original x = 50: centre 50.5 -> input 32.32 -> cell coordinate 8.08 -> index 7.58.
    assert depth.values[0, 50] == pytest.approx(7.58, abs=1e-5)
    # x = 10: 10.5 * 0.64 / 4 - 0.5 = 1.18; x = 0: 0.5 * 0.64 / 4 - 0.5 < 0 -> clamped to cell 0.
    assert depth.values[0, 10] == pytest.approx(1.18, abs=1e-5)
    assert depth.values[0, 0] == 0.0
    np.testing.assert_array_equal(depth.values[0], depth.values[HEIGHT - 1])  # constant along y


def test_rows_use_scale_y(letterbox):
    ramp = np.tile(np.arange(CELLS, dtype=np.float32)[:, None], (1, CELLS))
    values = resample_to_image(ramp, letterbox, SIZE, HEIGHT, WIDTH)
    # y = 30: 30.5 * 38 / 60 / 4 - 0.5 = 4.3291666...
    assert values[30, 7] == pytest.approx(30.5 * 38 / 60 / 4 - 0.5, abs=1e-5)


def test_flipped_letterbox_reads_the_map_mirrored():
    flipped = Letterbox(-0.64, 38 / 60, 64.0, 0.0, SIZE)  # x_input = 64 - 0.64 x_orig
    ramp = np.tile(np.arange(CELLS, dtype=np.float32), (CELLS, 1))
    values = resample_to_image(ramp, flipped, SIZE, HEIGHT, WIDTH)
    # x = 50: 64 - 32.32 = 31.68 -> 7.92 - 0.5 = 7.42
    assert values[0, 50] == pytest.approx(7.42, abs=1e-5)


def test_identity_geometry_returns_the_map():
    logits = np.random.default_rng(0).normal(size=(8, 8, 4)).astype(np.float32)
    identity = Letterbox(1.0, 1.0, 0.0, 0.0, 8)
    np.testing.assert_allclose(resample_to_image(logits, identity, 8, 8, 8), logits, atol=1e-6)
    labels = decode_semantic(logits, identity, 8, 8, 8)
    np.testing.assert_array_equal(labels.values, logits.argmax(-1))


def test_logits_are_resampled_before_the_argmax():
    """Two cells: label 1 (logit margin 1) then label 2 (margin 3): the boundary moves towards
    the weaker cell, which resizing labels would not do."""
    logits = np.zeros((1, 2, 3), np.float32)
    logits[0, 0, 1], logits[0, 1, 2] = 1.0, 3.0
    box = Letterbox(0.5, 0.5, 0.0, 0.0, 2)  # 4 x 2 original pixels onto a 2 x 2 input, 1 cell = 1 px wide
    labels = decode_semantic(logits, box, 2, 2, 4).values
    # cell coordinates of x = 0..3: clamp(-0.25)=0, 0.25, 0.75, clamp(1.25)=1; label 2 wins where
    # 3w > 1 - w, i.e. w > 0.25: only x = 0 and the tie x = 1 (argmax picks the lower label) keep 1.
    np.testing.assert_array_equal(labels[0], [1, 1, 2, 2])


def test_bad_inputs_raise(letterbox):
    with pytest.raises(ValueError, match="input_size"):
        resample_to_image(np.zeros((4, 4), np.float32), letterbox, 32, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="logits"):
        decode_semantic(np.zeros((4, 4), np.float32), letterbox, SIZE, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="depth"):
        decode_depth(np.zeros((4, 4, 2), np.float32), letterbox, SIZE, HEIGHT, WIDTH)
