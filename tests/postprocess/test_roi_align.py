"""RoIAlign and FPN level assignment against hand-computed values (pins the pixel convention)."""

import numpy as np
import pytest

from tfsp.postprocess.roi_align import (CANONICAL_BOX_SIZE_PX, CANONICAL_LEVEL, assign_fpn_levels,
                                        level_area_thresholds, multilevel_roi_align, roi_align)


def _ramps(size: int = 4) -> np.ndarray:
    """(size, size, 2) map: channel 0 is the x of each cell centre (j + 0.5), channel 1 its y (i + 0.5)."""
    centres = np.arange(size, dtype=np.float32) + 0.5
    return np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1)


def test_ramp_bins_average_samples_at_quarter_offsets():
    # Box [1, 1, 3, 3], 2 bins of 1 cell, 2 samples per bin side: x = 1.25, 1.75 | 2.25, 2.75. Bilinear
    # reading of a linear ramp is exact between cell centres, so the bins hold their mean x: 1.5 | 2.5.
    features = _ramps()
    before = features.copy()
    out = roi_align(features, np.array([[1, 1, 3, 3]], np.float32), output_size=2, sampling_ratio=2)
    assert out.shape == (1, 2, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, ..., 0], [[1.5, 2.5], [1.5, 2.5]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 1], [[1.5, 1.5], [2.5, 2.5]], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(features, before)


def test_one_sample_per_bin_reads_the_bin_centre():
    out = roi_align(_ramps(), np.array([[1, 0.5, 3, 2.5]], np.float32), output_size=1, sampling_ratio=1)
    np.testing.assert_allclose(out[0, 0, 0], [2.0, 1.5], rtol=0, atol=1e-6)


def test_constant_map_gives_the_constant_inside_and_zero_far_outside():
    features = np.full((5, 3, 4), 7.0, np.float32)
    boxes = np.array([[0.2, 0.1, 2.9, 4.8], [-0.4, -0.4, 3.4, 5.4], [1.0, 1.0, 1.0, 1.0],
                      [10.0, 0.0, 12.0, 2.0]], np.float32)  # inside; within half a pixel; a point; far right
    out = roi_align(features, boxes, output_size=3, sampling_ratio=2)
    np.testing.assert_allclose(out[:3], 7.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[3], 0.0)


def test_samples_within_half_a_pixel_outside_replicate_the_edge_beyond_count_as_zero():
    # 4-wide x ramp (3.5 at the last column); 1 bin, 2 x 2 samples; y samples at 1.5, 2.5 are inside.
    features = _ramps()[..., :1]
    boxes = np.array([
        [3.5, 1, 4.5, 3],  # x = 3.75, 4.25 (u = 3.25, 3.75 <= W = 4): clamped to the last column -> 3.5
        [4.0, 1, 5.0, 3],  # x = 4.25, 4.75 (u = 3.75 | 4.25 > 4): 3.5 and 0 -> mean 1.75
        [-2, 1, 2, 3],  # x = -1, 1 (u = -1.5 < -1 | 0.5): 0 and 1.0 -> mean 0.5
        [-0.6, 1, 0.2, 3],  # x = -0.4, 0 (u = -0.9, -0.5): both clamped to the first column -> 0.5
    ], np.float32)
    out = roi_align(features, boxes, output_size=1, sampling_ratio=2)
    np.testing.assert_allclose(out[:, 0, 0, 0], [3.5, 1.75, 0.5, 0.5], rtol=0, atol=1e-6)


def test_whole_map_box_with_one_bin_is_the_mean_of_four_hand_read_samples():
    # 3 x 3 map, box [0, 0, 3, 3], 1 bin, samples at x, y in {0.75, 2.25}: u in {0.25, 1.75}.
    corner = np.zeros((3, 3, 1), np.float32)
    corner[0, 0] = 16.0  # only sample (0.25, 0.25) sees it, with weight 0.75 * 0.75: 9 / 4 samples
    centre = np.zeros((3, 3, 1), np.float32)
    centre[1, 1] = 16.0  # every sample is 0.75 cells from index 1 on both axes: weight 0.25 * 0.25 -> 1 each
    box = np.array([[0, 0, 3, 3]], np.float32)
    assert roi_align(corner, box, 1, 2)[0, 0, 0, 0] == pytest.approx(2.25, abs=1e-6)
    assert roi_align(centre, box, 1, 2)[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-6)


def test_inverted_box_is_a_zero_size_box_at_its_first_corner():
    features = _ramps()
    inverted = roi_align(features, np.array([[2.5, 1.5, 1.0, 0.0]], np.float32), 2, 2)
    np.testing.assert_allclose(inverted[0], np.broadcast_to([2.5, 1.5], (2, 2, 2)), rtol=0, atol=1e-6)


def test_no_boxes_give_an_empty_batch():
    out = roi_align(np.zeros((4, 5, 3), np.float32), np.zeros((0, 4), np.float32), output_size=7)
    assert out.shape == (0, 7, 7, 3) and out.dtype == np.float32
    assert multilevel_roi_align({2: np.zeros((8, 8, 3), np.float32)}, np.zeros((0, 4)), 7).shape == (0, 7, 7, 3)


@pytest.mark.parametrize("kwargs", [{"output_size": 0}, {"output_size": 2, "sampling_ratio": 0},
                                    {"output_size": 2.0}])
def test_rejects_non_positive_or_non_int_sizes(kwargs):
    with pytest.raises(ValueError, match="positive int"):
        roi_align(np.zeros((4, 4, 1), np.float32), np.zeros((1, 4), np.float32), **kwargs)


def test_level_thresholds_are_the_fpn_canonical_sizes():
    assert (CANONICAL_BOX_SIZE_PX, CANONICAL_LEVEL) == (224, 4)
    np.testing.assert_array_equal(level_area_thresholds(2, 5), [112.0 ** 2, 224.0 ** 2, 448.0 ** 2])


def test_fpn_level_assignment_golden_values():
    sides = np.array([224, 112, 448, 56, 16, 0, 2000, 223.9, 111.9, 447.9], np.float32)
    boxes = np.stack([10 + 0 * sides, 20 + 0 * sides, 10 + sides, 20 + sides], axis=1)
    levels = assign_fpn_levels(boxes, min_level=2, max_level=5)
    assert levels.dtype == np.int32
    np.testing.assert_array_equal(levels, [4, 3, 5, 2, 2, 2, 5, 3, 2, 4])
    # Non-square: sqrt(112 * 448) = 224 -> 4; inverted boxes have zero area -> min level.
    odd = np.array([[0, 0, 112, 448], [300, 300, 0, 0]], np.float32)
    np.testing.assert_array_equal(assign_fpn_levels(odd, 3, 6), [4, 3])
    np.testing.assert_array_equal(assign_fpn_levels(boxes[:3], 4, 4), [4, 4, 4])


def test_multilevel_keeps_box_order_and_uses_each_level_stride():
    # Level l's map holds l in channel 0 and the x of its cell centres in channel 1 (feature units).
    maps = {}
    for level in (2, 3, 4):
        size = 512 >> level
        maps[level] = np.concatenate([np.full((size, size, 1), level, np.float32), _ramps(size)[..., :1]], -1)
    boxes = np.array([[0, 0, 60, 60], [0, 0, 300, 300], [128, 128, 256, 256], [64, 0, 192, 480]], np.float32)
    out = multilevel_roi_align(maps, boxes, output_size=2, sampling_ratio=2)
    assert out.shape == (4, 2, 2, 2)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [2, 4, 3, 4])  # sqrt areas 60, 300, 128, ~247.9
    # Box 2 on level 3 (stride 8) is [16, 16, 32, 32] in cells: samples x = 18, 22 | 26, 30.
    np.testing.assert_allclose(out[2, :, :, 1], [[20, 28], [20, 28]], rtol=0, atol=1e-5)
    for n, level in enumerate([2, 4, 3, 4]):
        expected = roi_align(maps[level], boxes[n:n + 1] / 2.0 ** level, 2, 2)
        np.testing.assert_array_equal(out[n:n + 1], expected)


def test_multilevel_rejects_gaps_between_levels():
    maps = {2: np.zeros((8, 8, 1), np.float32), 4: np.zeros((2, 2, 1), np.float32)}
    with pytest.raises(ValueError, match="consecutive"):
        multilevel_roi_align(maps, np.zeros((1, 4), np.float32), 2)


def _detectron2_roi_align(features: np.ndarray, box: np.ndarray, size: int, ratio: int) -> np.ndarray:
    """Literal float64 transcription of Detectron2's ``ROIAlign_forward`` CPU loop (aligned=True), one box."""
    height, width, _ = features.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    bin_w, bin_h = (x1 - x0) / size, (y1 - y0) / size
    out = np.zeros((size, size, features.shape[2]))
    for ph in range(size):
        for pw in range(size):
            for iy in range(ratio):
                y = y0 - 0.5 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                for ix in range(ratio):
                    x = x0 - 0.5 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                    if y < -1.0 or y > height or x < -1.0 or x > width:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    y_lo, x_lo = int(y), int(x)
                    y_hi, x_hi = min(y_lo + 1, height - 1), min(x_lo + 1, width - 1)
                    if y_lo >= height - 1:
                        y_lo = y_hi = height - 1
                        y = float(y_lo)
                    if x_lo >= width - 1:
                        x_lo = x_hi = width - 1
                        x = float(x_lo)
                    ly, lx = y - y_lo, x - x_lo
                    out[ph, pw] += ((1 - ly) * (1 - lx) * features[y_lo, x_lo] + (1 - ly) * lx * features[y_lo, x_hi]
                                    + ly * (1 - lx) * features[y_hi, x_lo] + ly * lx * features[y_hi, x_hi])
    return out / (ratio * ratio)


@pytest.mark.parametrize("height,width,size,ratio", [(9, 13, 2, 2), (12, 5, 3, 3), (1, 6, 2, 1)])
def test_matches_a_transcription_of_detectron2_roi_align_v2(height, width, size, ratio):
    rng = np.random.default_rng(height)
    features = rng.normal(size=(height, width, 2)).astype(np.float32)
    corners = rng.uniform(-3, 1.2 * max(height, width), (12, 2))
    sides = rng.choice([0.0, 0.4, 3.0, 2.0 * max(height, width)], (12, 1)) * rng.uniform(0.5, 1.0, (12, 2))
    boxes = np.concatenate([corners, corners + sides], axis=1).astype(np.float32)
    expected = np.stack([_detectron2_roi_align(features.astype(np.float64), box, size, ratio) for box in boxes])
    got = roi_align(features, boxes, size, ratio)
    assert np.any(expected == 0) and np.any(expected != 0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
