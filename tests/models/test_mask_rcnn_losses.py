"""Tests for tfsp.models.mask_rcnn_losses: hand-computed values, class-channel selection, empty guards."""

import math

import numpy as np
import tensorflow as tf

from tfsp.models import mask_rcnn_losses as losses

LOG2 = math.log(2.0)


def test_smooth_l1_is_l1_at_beta_zero_and_quadratic_inside_beta():
    diff = tf.constant([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(losses.smooth_l1(diff).numpy(), [2.0, 0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(losses.smooth_l1(diff, beta=1.0).numpy(), [1.5, 0.125, 0.0, 0.125, 1.5])


def test_rpn_losses_normalise_by_sampled_anchors():
    # 1 image, one 1 x 2 level with A = 1: anchors 0 (positive) and 1 (negative); 2 more ignored on a 1 x 2 level.
    objectness = [tf.zeros([1, 1, 2, 1]), tf.fill([1, 1, 2, 1], 5.0)]
    deltas = [tf.zeros([1, 1, 2, 4]), tf.zeros([1, 1, 2, 4])]
    labels = tf.constant([[1, 0, -1, -1]])
    targets = tf.constant([[[1.0, -1.0, 0.5, 0.0], [9.0, 9.0, 9.0, 9.0], [9.0] * 4, [9.0] * 4]])
    objectness_loss, box_loss = losses.rpn_losses(objectness, deltas, labels, targets, batch_size_per_image=4)
    np.testing.assert_allclose(objectness_loss.numpy(), 2 * LOG2 / 4, rtol=1e-6)
    np.testing.assert_allclose(box_loss.numpy(), 2.5 / 4, rtol=1e-6)


def test_box_head_losses_read_the_ground_truth_class_deltas():
    logits = tf.zeros([3, 3])  # C = 2
    deltas = tf.constant([[0.0] * 4 + [1.0] * 4, [5.0] * 8, [7.0] * 8])
    classes = tf.constant([2, 0, 0])  # row 0: class 1 (deltas 4..7), row 1 background, row 2 padding
    targets = tf.constant([[1.0, 1.0, 1.0, 0.0], [0.0] * 4, [0.0] * 4])
    weights = tf.constant([1.0, 1.0, 0.0])
    classification, regression = losses.box_head_losses(logits, deltas, classes, targets, weights)
    np.testing.assert_allclose(classification.numpy(), math.log(3.0), rtol=1e-6)
    np.testing.assert_allclose(regression.numpy(), 1.0 / 2, rtol=1e-6)


def test_mask_loss_reads_the_class_channel_of_foreground_rois():
    logits = np.zeros((2, 4, 4, 2), np.float32)
    logits[0, ..., 1] = 100.0  # class-2 channel of RoI 0: confident foreground
    targets = np.ones((2, 4, 4), np.float32)
    np.testing.assert_allclose(losses.mask_loss(logits, tf.constant([2, 0]), targets).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(losses.mask_loss(logits, tf.constant([1, 0]), targets).numpy(), LOG2, rtol=1e-6)
    assert float(losses.mask_loss(logits, tf.constant([0, 0]), targets)) == 0.0
    binarised = np.full((2, 4, 4), 0.49, np.float32)  # below 0.5: target 0
    logits[0, ..., 0] = -100.0
    np.testing.assert_allclose(losses.mask_loss(logits, tf.constant([1, 0]), binarised).numpy(), 0.0, atol=1e-6)


def test_keypoint_loss_is_a_spatial_softmax_over_cells():
    size, joints = 3, 2
    logits = np.zeros((1, size, size, joints), np.float32)
    logits[0, 2, 1, 0] = 50.0  # joint 0 peaks at cell row 2, col 1 -> flat 7
    indices = tf.constant([[7, 0]])
    valid = tf.constant([[True, True]])
    np.testing.assert_allclose(losses.keypoint_loss(logits, indices, valid).numpy(), math.log(9.0) / 2, rtol=1e-5)
    assert float(losses.keypoint_loss(logits, indices, tf.constant([[False, False]]))) == 0.0

