"""Augmentation geometry: golden flips and crops, seeds, photometric invariants."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data import augment
from tfsp.data.augment import AugmentConfig
from tfsp.data.keypoints import KEYPOINT_NAMES

LEFT_EYE, RIGHT_EYE = KEYPOINT_NAMES.index("left_eye"), KEYPOINT_NAMES.index("right_eye")
LEFT_WRIST, RIGHT_WRIST = KEYPOINT_NAMES.index("left_wrist"), KEYPOINT_NAMES.index("right_wrist")


def _keypoints() -> np.ndarray:
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, LEFT_EYE] = [10.0, 5.0, 2.0]
    keypoints[0, RIGHT_EYE] = [20.0, 6.0, 1.0]
    keypoints[0, LEFT_WRIST] = [30.0, 40.0, 2.0]  # right wrist stays unlabelled
    return keypoints


def test_flip_box_golden():
    boxes = tf.constant([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 50.0]])
    np.testing.assert_array_equal(augment.flip_boxes_xyxy(boxes, 100), [[70, 5, 90, 25], [0, 0, 100, 50]])


def test_flip_keypoints_swaps_left_and_right_golden():
    flipped = augment.flip_keypoints(tf.constant(_keypoints()), 100).numpy()[0]
    np.testing.assert_array_equal(flipped[LEFT_EYE], [80.0, 6.0, 1.0])  # was the right eye at x = 20
    np.testing.assert_array_equal(flipped[RIGHT_EYE], [90.0, 5.0, 2.0])  # was the left eye at x = 10
    np.testing.assert_array_equal(flipped[RIGHT_WRIST], [70.0, 40.0, 2.0])
    np.testing.assert_array_equal(flipped[LEFT_WRIST], [0.0, 0.0, 0.0])  # unlabelled stays zero, not x = W
    assert np.count_nonzero(flipped[:, 2]) == 3


def test_double_flip_is_identity():
    keypoints = tf.constant(_keypoints())
    boxes = tf.constant([[1.5, 2.0, 7.25, 9.0]])
    np.testing.assert_array_equal(augment.flip_keypoints(augment.flip_keypoints(keypoints, 64), 64), keypoints)
    np.testing.assert_array_equal(augment.flip_boxes_xyxy(augment.flip_boxes_xyxy(boxes, 64), 64), boxes)


def test_crop_instances_golden():
    boxes = tf.constant([[10.0, 10.0, 30.0, 30.0], [22.0, 6.0, 30.0, 14.0], [0.0, 0.0, 5.0, 5.0]])
    keypoints = np.zeros((3, 17, 3), np.float32)
    keypoints[0, 0] = [25.0, 20.0, 2.0]  # inside the window
    keypoints[0, 1] = [15.0, 20.0, 2.0]  # left of the window
    window = tf.constant([5, 20, 40, 40])  # y0, x0, height, width
    valid = tf.constant([True, True, True])
    out_boxes, out_keypoints, out_valid = augment.crop_instances(boxes, tf.constant(keypoints), valid, window, 0.5)
    np.testing.assert_array_equal(out_boxes, [[0, 5, 10, 25], [2, 1, 10, 9], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out_valid, [True, True, False])  # half kept; fully kept; fully outside
    np.testing.assert_array_equal(out_keypoints[0, 0], [5.0, 15.0, 2.0])
    np.testing.assert_array_equal(out_keypoints[0, 1], [0.0, 0.0, 0.0])
    _, _, strict = augment.crop_instances(boxes, tf.constant(keypoints), valid, window, 0.6)
    np.testing.assert_array_equal(strict, [False, True, False])


def test_sample_crop_window_inside_image_and_seeded():
    config = AugmentConfig(crop_probability=1.0)
    windows = np.stack([augment.sample_crop_window(tf.constant([s, 7]), 60, 90, config).numpy() for s in range(50)])
    y0, x0, height, width = windows.T
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + height <= 60).all() and (x0 + width <= 90).all()
    assert (height >= 1).all() and (width < 90).any()
    again = augment.sample_crop_window(tf.constant([3, 7]), 60, 90, config).numpy()
    np.testing.assert_array_equal(again, windows[3])
    never = AugmentConfig(crop_probability=0.0)
    np.testing.assert_array_equal(augment.sample_crop_window(tf.constant([3, 7]), 60, 90, never), [0, 0, 60, 90])


def test_photometric_is_seeded_bounded_and_identity_when_disabled():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(0, 255, (16, 16, 3)).astype(np.float32))
    config = AugmentConfig()
    first = augment.photometric(image, tf.constant([1, 2]), config).numpy()
    np.testing.assert_array_equal(first, augment.photometric(image, tf.constant([1, 2]), config))
    assert first.shape == (16, 16, 3) and first.min() >= 0.0 and first.max() <= 255.0
    assert not np.allclose(first, image)
    off = AugmentConfig(brightness_delta=0.0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0.0)
    np.testing.assert_allclose(augment.photometric(image, tf.constant([1, 2]), off), image, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs", [{"crop_scale_range": (0.0, 1.0)}, {"crop_scale_range": (0.5, 1.5)}, {"flip_probability": 2.0}]
)
def test_augment_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AugmentConfig(**kwargs)
