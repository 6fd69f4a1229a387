"""Attribute crops (windows, bilinear sampling, pad border) and logit decoding, against hand-computed values."""

import math

import numpy as np
import pytest

from tfsp.postprocess.attributes import (ATTRIBUTE_LOGITS, AttributeCropConfig, crop_boxes, crop_windows_xyxy,
                                         decode_attributes, sigmoid)
from tfsp.runtime.preprocess import LETTERBOX_PAD_VALUE

PAD = LETTERBOX_PAD_VALUE


def test_windows_are_square_centred_and_keep_the_canvas_for_small_boxes():
    config = AttributeCropConfig(crop_size=4, canvas_px=10.0, context=0.25)
    boxes = np.array([
        [10, 20, 14, 22],  # longest 4 -> 1.5 * 4 = 6 < 10: canvas, centre (12, 21)
        [0, 0, 40, 20],  # longest 40 -> 60 > 10, centre (20, 10)
        [5, 5, 3, 3],  # inverted (degenerate): longest clamped to 0 -> canvas, centre (4, 4)
    ], np.float32)
    expected = np.array([[7, 16, 17, 26], [-10, -20, 50, 40], [-1, -1, 9, 9]], np.float32)
    windows = crop_windows_xyxy(boxes, config)
    assert windows.dtype == np.float32
    np.testing.assert_array_equal(windows, expected)
    assert crop_windows_xyxy(np.zeros((0, 4), np.float32), config).shape == (0, 4)


def test_crop_of_a_ramp_samples_pixel_centres_exactly():
    # Pixel (i, j) holds 2 (j + 0.5) + 3 (i + 0.5) + channel: bilinear sampling of a linear ramp is
    # exact, so each crop pixel shows 2 x + 3 y + channel at its window point.
    size = 16
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    image = (2 * (cols + 0.5) + 3 * (rows + 0.5))[..., None] + np.arange(3, dtype=np.float32)
    config = AttributeCropConfig(crop_size=4, canvas_px=8.0, context=0.0)
    box = np.array([[7, 6, 9, 10]], np.float32)  # centre (8, 8) -> window [4, 4, 12, 12], step 2
    crop = crop_boxes(image, box, config)
    points = np.array([5, 7, 9, 11], np.float32)  # x0 + (j + 0.5) * 2
    expected = (2 * points[None, :] + 3 * points[:, None])[..., None] + np.arange(3)
    assert crop.shape == (1, 4, 4, 3) and crop.dtype == np.float32
    np.testing.assert_allclose(crop[0], expected, atol=1e-4)


def test_a_box_inside_the_canvas_keeps_its_scale():
    image = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    config = AttributeCropConfig(crop_size=8, canvas_px=16.0, context=0.15)
    small, larger = [[14, 14, 18, 18]], [[10, 11, 22, 21]]  # same centre, both fit the canvas
    np.testing.assert_array_equal(crop_boxes(image, small, config), crop_boxes(image, larger, config))


@pytest.mark.parametrize("centre, expected_first", [
    (1.0, (PAD + 10.0) / 2),  # first sample at x = 0: half pad, half edge pixel
    (0.75, 0.75 * PAD + 0.25 * 10.0),  # x = -0.25: a quarter pixel outside
    (0.5, PAD),  # x = -0.5: half a pixel outside is pure pad
    (2.0, 10.0),  # x = 1: inside
])
def test_the_pad_value_blends_linearly_over_the_last_half_pixel(centre, expected_first):
    image = np.full((8, 8, 3), 10.0, np.float32)
    config = AttributeCropConfig(crop_size=2, canvas_px=4.0, context=0.0)  # samples at centre -/+ 1
    box = np.array([[centre, 4.0, centre, 4.0]], np.float32)  # rows sample y = 3 and 5 (inside)
    crop = crop_boxes(image, box, config)
    np.testing.assert_allclose(crop[0, :, 0], expected_first, atol=1e-4)
    np.testing.assert_allclose(crop[0, :, 1], 10.0, atol=1e-4)


def test_right_and_bottom_borders_and_far_outside_are_pad():
    image = np.full((8, 8, 3), 10.0, np.float32)
    config = AttributeCropConfig(crop_size=2, canvas_px=4.0, context=0.0)
    crop = crop_boxes(image, np.array([[7, 7.5, 7, 7.5], [30, -30, 30, -30]], np.float32), config)
    # Box 0: x samples 6 (inside) and 8 (edge: half pad); y samples 6.5 (inside) and 8.5 (pad).
    np.testing.assert_allclose(crop[0, ..., 0], [[10.0, (PAD + 10) / 2], [PAD, PAD]], atol=1e-4)
    np.testing.assert_array_equal(crop[1], PAD)


def test_no_boxes_gives_an_empty_batch_of_crops():
    config = AttributeCropConfig(crop_size=5)
    crops = crop_boxes(np.zeros((16, 16, 3), np.float32), np.zeros((0, 4), np.float32), config)
    assert crops.shape == (0, 5, 5, 3) and crops.dtype == np.float32


def test_crop_rejects_bad_shapes():
    config = AttributeCropConfig()
    with pytest.raises(ValueError, match="image"):
        crop_boxes(np.zeros((16, 16), np.float32), np.zeros((1, 4), np.float32), config)
    with pytest.raises(ValueError, match="boxes_xyxy"):
        crop_boxes(np.zeros((16, 16, 3), np.float32), np.zeros((2, 3), np.float32), config)


@pytest.mark.parametrize("field, value", [("crop_size", 0), ("crop_size", 2.5), ("canvas_px", 0.0),
                                          ("canvas_px", float("inf")), ("context", -0.1)])
def test_crop_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        AttributeCropConfig(**{field: value})


def test_fixed_scale():
    assert AttributeCropConfig(crop_size=64, canvas_px=128.0).fixed_scale == 0.5


def test_decode_attributes_applies_a_stable_sigmoid_and_thresholds():
    names = ("red", "filled", "large")
    logits = np.array([[0.0, 2.0, -3.0], [1000.0, -1000.0, math.log(3.0)]], np.float32)
    with np.errstate(all="raise"):
        attributes = decode_attributes(logits, names, np.array([0.5, 0.9, 0.7], np.float32))
    expected = np.array([[0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(3))], [1.0, 0.0, 0.75]], np.float32)
    np.testing.assert_allclose(attributes.scores, expected, rtol=1e-6, atol=1e-7)
    assert attributes.names == names
    np.testing.assert_array_equal(attributes.present, [[True, False, False], [True, False, True]])
    assert attributes.present_names(1) == ("red", "large")


def test_sigmoid_matches_the_float64_formula():
    x = np.linspace(-40, 40, 161, dtype=np.float32)
    np.testing.assert_allclose(sigmoid(x), 1.0 / (1.0 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-30)


def test_decode_attributes_handles_no_instances_and_checks_the_width():
    empty = decode_attributes(np.zeros((0, 2), np.float32), ("a", "b"), 0.5)
    assert len(empty) == 0 and empty.scores.shape == (0, 2)
    with pytest.raises(ValueError, match="logits"):
        decode_attributes(np.zeros((3, 2), np.float32), ("a", "b", "c"), 0.5)


def test_output_name():
    assert ATTRIBUTE_LOGITS == "attribute_logits"
