"""TF RoIAlign (training) against the numpy RoIAlign (inference); its gradient w.r.t. the features."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.roi_align_tf import TF_PARITY_ATOL, assign_fpn_levels_tf, multilevel_roi_align_tf, roi_align_tf
from tfsp.postprocess.roi_align import assign_fpn_levels, multilevel_roi_align, roi_align


def _random_boxes(rng: np.random.Generator, batch: int, count: int, width: float, height: float) -> np.ndarray:
    """(batch, count, 4) boxes of every kind: inside, partly and fully outside, tiny (< 1 cell), point, huge."""
    size = np.array([width, height], np.float32)
    centres = rng.uniform(-0.3, 1.3, (batch, count, 2)) * size
    cells = rng.choice([0.0, 0.3, 2.0], (batch, count, 1))  # absolute sides in cells
    fractions = rng.choice([0.3, 0.7, 2.0], (batch, count, 1)) * size  # sides relative to the map
    sides = np.where(rng.uniform(size=(batch, count, 1)) < 0.4, cells, fractions)
    sides = sides * rng.uniform(0.5, 1.0, (batch, count, 2))
    return np.concatenate([centres - sides / 2, centres + sides / 2], axis=-1).astype(np.float32)


@pytest.mark.parametrize("channels,height,width,output_size,sampling_ratio", [
    (1, 9, 13, 2, 2), (3, 12, 5, 7, 2), (8, 6, 10, 3, 1), (2, 7, 7, 4, 3)])
def test_tf_roi_align_matches_numpy(channels, height, width, output_size, sampling_ratio):
    rng = np.random.default_rng(channels)
    features = rng.normal(size=(2, height, width, channels)).astype(np.float32)
    boxes = _random_boxes(rng, 2, 40, width, height)
    got = roi_align_tf(tf.constant(features), tf.constant(boxes), output_size, sampling_ratio).numpy()
    assert got.shape == (2, 40, output_size, output_size, channels)
    for b in range(2):
        expected = roi_align(features[b], boxes[b], output_size, sampling_ratio)
        np.testing.assert_allclose(got[b], expected, rtol=0, atol=TF_PARITY_ATOL)
    assert np.any(got == 0) and np.any(np.abs(got) > 0.5)  # some boxes fall off the map, others do not


def test_tf_roi_align_pins_the_same_ramp_golden_values():
    centres = np.arange(4, dtype=np.float32) + 0.5
    ramp = np.broadcast_to(centres[None, :, None], (4, 4, 1))
    got = roi_align_tf(tf.constant(ramp[None]), tf.constant([[[1, 1, 3, 3], [4.0, 1, 5.0, 3]]], tf.float32), 2, 2)
    np.testing.assert_allclose(got[0, 0, ..., 0], [[1.5, 2.5], [1.5, 2.5]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[0, 1, ..., 0], [[3.5, 0.0], [3.5, 0.0]], rtol=0, atol=1e-6)  # x = 4.25 | 4.75


def test_tf_level_assignment_is_bit_identical_to_numpy():
    rng = np.random.default_rng(3)
    corners = rng.uniform(-50, 600, (3, 200, 2)).astype(np.float32)
    sides = np.exp(rng.uniform(np.log(1.0), np.log(1500.0), (3, 200, 2))).astype(np.float32)
    boxes = np.concatenate([corners, corners + sides], axis=-1)
    golden = np.array([[10, 10, 234, 234], [0, 0, 112, 112], [0, 0, 111.9, 111.9], [0, 0, 0, 0]], np.float32)
    boxes[0, :4] = golden
    got = assign_fpn_levels_tf(tf.constant(boxes), 2, 6).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, assign_fpn_levels(boxes, 2, 6))
    np.testing.assert_array_equal(got[0, :4], [4, 3, 2, 2])
    assert set(np.unique(got)) == {2, 3, 4, 5, 6}


def _pyramid(rng: np.random.Generator, levels, batch: int, channels: int) -> list[np.ndarray]:
    """One map per level for a 256 x 192 image (level l: stride 2 ** l)."""
    return [rng.normal(size=(batch, 192 >> level, 256 >> level, channels)).astype(np.float32) for level in levels]


def test_tf_multilevel_matches_numpy_and_accepts_levels_in_any_order():
    rng = np.random.default_rng(7)
    levels = (3, 2, 4)
    maps = _pyramid(rng, levels, batch=2, channels=3)
    corners = rng.uniform(-40, 280, (2, 30, 2))
    sides = np.exp(rng.uniform(np.log(0.5), np.log(600.0), (2, 30, 2)))
    boxes = np.concatenate([corners, corners + sides], axis=-1).astype(np.float32)
    got = multilevel_roi_align_tf([tf.constant(m) for m in maps], tf.constant(boxes), levels, 5, 2).numpy()
    assert got.shape == (2, 30, 5, 5, 3)
    assert set(np.unique(assign_fpn_levels(boxes, 2, 4))) == {2, 3, 4}
    for b in range(2):
        expected = multilevel_roi_align({level: m[b] for level, m in zip(levels, maps)}, boxes[b], 5, 2)
        np.testing.assert_allclose(got[b], expected, rtol=0, atol=TF_PARITY_ATOL)


def test_gradient_of_the_sum_is_the_hand_computed_sample_weights():
    # Box [1, 1, 3, 3], 2 x 2 bins, 2 x 2 samples each: along x the samples u = 0.75, 1.25, 1.75, 2.25
    # put total weight [0.25, 1.75, 1.75, 0.25] on the columns (y alike); each sample is 1/4 of its bin.
    # Box [4, 1, 5, 3], 1 bin: u_x = 3.75 (clamped: all on column 3) and 4.25 (zero); u_y = 1, 2 exactly.
    features = tf.Variable(tf.random.normal((1, 4, 4, 3), seed=1))
    boxes = tf.Variable([[[1, 1, 3, 3], [4, 1, 5, 3]]], dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        inside = roi_align_tf(features, boxes[:, :1], 2, 2)
        edge = roi_align_tf(features, boxes[:, 1:], 1, 2)
        total_inside, total_edge = tf.reduce_sum(inside), tf.reduce_sum(edge)
    axis = np.array([0.25, 1.75, 1.75, 0.25], np.float32)
    expected = np.repeat((np.outer(axis, axis) / 4.0)[None, :, :, None], 3, axis=-1)
    np.testing.assert_allclose(tape.gradient(total_inside, features).numpy(), expected, rtol=0, atol=1e-6)
    assert tape.gradient(total_inside, features).numpy().sum() == pytest.approx(1 * 2 * 2 * 3)  # N s s C
    expected_edge = np.zeros((1, 4, 4, 3), np.float32)
    expected_edge[0, 1:3, 3] = 0.25  # 2 of the 4 samples are valid, each 1/4 of the bin
    np.testing.assert_allclose(tape.gradient(total_edge, features).numpy(), expected_edge, rtol=0, atol=1e-6)
    assert tape.gradient(total_inside, boxes) is None  # boxes are constants, like Detectron2


def test_multilevel_gradient_is_finite_and_sums_to_the_bin_count_for_boxes_inside():
    rng = np.random.default_rng(11)
    levels = (2, 3, 4)
    maps = [tf.Variable(m) for m in _pyramid(rng, levels, batch=2, channels=4)]
    boxes = tf.constant([[[8, 8, 40, 40], [10, 5, 190, 155], [30, 20, 126, 94]],
                         [[1, 1, 3, 3], [60, 40, 80, 60], [2, 2, 254, 190]]], tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(multilevel_roi_align_tf(maps, boxes, levels, 3, 2))
    grads = tape.gradient(total, maps)
    assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)
    used = {int(level) for level in np.unique(assign_fpn_levels(boxes.numpy(), 2, 4))}
    assert used == {2, 3}
    # Every sample lies inside its map, so each bin's weights sum to 1: B * N * s * s * C.
    assert sum(float(tf.reduce_sum(tf.convert_to_tensor(g))) for g in grads) == pytest.approx(2 * 3 * 3 * 3 * 4,
                                                                                              rel=1e-5)


def test_no_boxes_and_unknown_box_count_in_a_graph():
    features = tf.zeros((2, 6, 5, 3))
    assert roi_align_tf(features, tf.zeros((2, 0, 4)), 7).shape == (2, 0, 7, 7, 3)
    traced = tf.function(lambda f, b: roi_align_tf(f, b, 4, 2),
                         input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, 4))])
    out = traced(tf.ones((1, 6, 5, 3)), tf.constant([[[1, 1, 4, 5], [0, 0, 5, 6]]], tf.float32))
    np.testing.assert_allclose(out.numpy(), 1.0, rtol=0, atol=1e-6)


def test_multilevel_rejects_mismatched_levels():
    maps = [tf.zeros((1, 8, 8, 2)), tf.zeros((1, 2, 2, 2))]
    with pytest.raises(ValueError, match="consecutive"):
        multilevel_roi_align_tf(maps, tf.zeros((1, 1, 4)), (2, 4), 2)
    with pytest.raises(ValueError, match="3 levels"):
        multilevel_roi_align_tf(maps, tf.zeros((1, 1, 4)), (2, 3, 4), 2)
