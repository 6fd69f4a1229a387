"""Tests for tfsp.postprocess.rcnn_masks: mask paste-back and keypoint decoding, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfsp.postprocess.rcnn_masks import (DEFAULT_MASK_THRESHOLD, decode_keypoint_heatmaps,
                                         instance_masks_from_detections, paste_masks, pose_scores,
                                         poses_from_detections)
from tfsp.structures import NUM_KEYPOINTS, Detections, InstanceMasks, Poses

# ---------------------------------------------------------------- paste_masks


def _left_half_mask(cells: int) -> np.ndarray:
    mask = np.zeros((cells, cells), np.float32)
    mask[:, : cells // 2] = 1.0
    return mask


def test_paste_left_half_mask_one_pixel_per_cell():
    # Box [10, 38) x [10, 38), 28 cells: cell v covers x in [10 + v, 11 + v); pixel centre x + 0.5 samples
    # exactly cell x - 10, so columns 10..23 (centres < 24) are 1, columns 24..37 are 0.
    masks = _left_half_mask(28)[None]
    boxes = np.array([[10, 10, 38, 38]], np.float32)
    pasted = paste_masks(masks, boxes, 48, 48)
    expected = np.zeros((1, 48, 48), bool)
    expected[0, 10:38, 10:24] = True
    assert pasted.dtype == np.bool_ and pasted.shape == (1, 48, 48)
    np.testing.assert_array_equal(pasted, expected)
    np.testing.assert_array_equal(masks[0], _left_half_mask(28))  # input untouched


@pytest.mark.parametrize("threshold, last_true_col", [(0.74, 3), (0.76, 2), (0.25, 4), (0.26, 3)])
def test_paste_bilinear_weights(threshold, last_true_col):
    # 4 cells over [0, 8): 2 px per cell, cell centres at x = 1, 3, 5, 7. Pixel 3 (centre 3.5) sits at cell
    # index 1.25 -> 0.75 * 1 + 0.25 * 0 = 0.75; pixel 4 (centre 4.5) at index 1.75 -> 0.25.
    pasted = paste_masks(_left_half_mask(4)[None], np.array([[0, 0, 8, 8]]), 8, 8, threshold=threshold)
    expected = np.zeros((1, 8, 8), bool)
    expected[0, :, : last_true_col + 1] = True
    np.testing.assert_array_equal(pasted, expected)


def test_paste_full_mask_fills_exactly_the_pixel_centres_in_the_box():
    full = np.ones((2, 28, 28), np.float32)
    boxes = np.array([[2.3, 1.0, 5.7, 3.0],  # centres 2.5..5.5 in [2.3, 5.7), 1.5..2.5 in [1, 3)
                      [-5.0, -5.0, 3.0, 3.0]], np.float32)  # partly outside the image: rows, cols 0..2
    pasted = paste_masks(full, boxes, 6, 8)
    expected = np.zeros((2, 6, 8), bool)
    expected[0, 1:3, 2:6] = True
    expected[1, 0:3, 0:3] = True
    np.testing.assert_array_equal(pasted, expected)


def test_paste_empty_inverted_and_outside_boxes_give_empty_masks():
    full = np.ones((3, 28, 28), np.float32)
    boxes = np.array([[4, 4, 4, 8], [8, 8, 2, 2], [20, 20, 30, 30]], np.float32)
    assert not paste_masks(full, boxes, 16, 16).any()


def test_paste_no_detections():
    pasted = paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), 5, 7)
    assert pasted.shape == (0, 5, 7) and pasted.dtype == np.bool_
    assert DEFAULT_MASK_THRESHOLD == 0.5


def test_paste_rejects_mismatched_boxes():
    with pytest.raises(ValueError, match="boxes_xyxy"):
        paste_masks(np.zeros((2, 28, 28)), np.zeros((1, 4)), 5, 7)
    with pytest.raises(ValueError, match="finite"):
        paste_masks(np.zeros((1, 28, 28)), np.array([[0, 0, np.nan, 4]]), 5, 7)


# ---------------------------------------------------------------- keypoints

S = 56


def test_decode_single_hot_cell_and_border_peak():
    heatmaps = np.zeros((1, 2, S, S), np.float32)
    heatmaps[0, 0, 3, 5] = 10.0  # symmetric: equal neighbours, no sub-cell shift
    heatmaps[0, 1, 0, 55] = 10.0  # corner: no refinement on the border despite the uneven neighbour
    heatmaps[0, 1, 0, 54] = 5.0
    boxes = np.array([[10, 20, 66, 132]], np.float32)  # 1 px per cell in x, 2 px in y
    keypoints = decode_keypoint_heatmaps(heatmaps, boxes)
    assert keypoints.shape == (1, 2, 3) and keypoints.dtype == np.float32
    e10, e5 = math.exp(10), math.exp(5)
    np.testing.assert_allclose(keypoints[0, 0], [10 + 5.5, 20 + 3.5 * 2, e10 / (e10 + S * S - 1)], rtol=1e-6)
    np.testing.assert_allclose(keypoints[0, 1], [10 + 55.5, 20 + 0.5 * 2, e10 / (e10 + e5 + S * S - 2)], rtol=1e-6)


def test_decode_sub_cell_peak_of_a_quadratic_bump():
    # Logits -((x - 20.8)^2 + (y - 30.25)^2) / 2 at cell centres: the parabola fit is exact; argmax cell
    # (u, v) = (30, 20), shifted by (+0.3, -0.25) cells. Box 2 px per cell in x, 1 in y.
    centres = np.arange(S) + 0.5
    logits = -((centres[None, :] - 20.8) ** 2 + (centres[:, None] - 30.25) ** 2) / 2
    keypoints = decode_keypoint_heatmaps(logits[None, None], np.array([[0, 0, 2 * S, S]]), smoothing_sigma=0.0)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(keypoints[0, 0, :2], [2 * 20.8, 30.25], atol=1e-4)
    np.testing.assert_allclose(keypoints[0, 0, 2], probabilities[30, 20], rtol=1e-5)
    # a Gaussian smoothed by a Gaussian keeps its centre (up to float32 smoothing and the truncated kernel)
    smoothed = decode_keypoint_heatmaps(logits[None, None], np.array([[0, 0, 2 * S, S]]), smoothing_sigma=1.0)
    np.testing.assert_allclose(smoothed[0, 0], keypoints[0, 0], atol=1e-3)


def test_decode_smoothing_prefers_mass_over_a_lone_spike():
    # One cell at logit 6 (probability ~0.28) against a 3 x 3 block at logit 5.5 around (40, 10) (~0.17 each, ~1.5
    # together): unsmoothed the spike wins; smoothed by 1 cell the block does.
    logits = np.zeros((1, 1, S, S), np.float32)
    logits[0, 0, 39:42, 9:12] = 5.5
    logits[0, 0, 10, 30] = 6.0
    box = np.array([[0, 0, S, S]], np.float32)  # 1 px per cell
    sharp = decode_keypoint_heatmaps(logits, box, smoothing_sigma=0.0)
    smooth = decode_keypoint_heatmaps(logits, box)
    np.testing.assert_allclose(sharp[0, 0, :2], [30.5, 10.5], atol=1e-6)
    np.testing.assert_allclose(smooth[0, 0, :2], [10.5, 40.5], atol=1e-6)
    np.testing.assert_allclose(smooth[0, 0, 2], sharp[0, 0, 2], rtol=1e-6)  # the score is the unsmoothed peak
    with pytest.raises(ValueError, match="smoothing_sigma must be >= 0"):
        decode_keypoint_heatmaps(logits, box, smoothing_sigma=-1.0)


def test_decode_keypoints_empty():
    assert decode_keypoint_heatmaps(np.zeros((0, 17, S, S)), np.zeros((0, 4))).shape == (0, 17, 3)
    assert decode_keypoint_heatmaps(np.zeros((2, 0, S, S)), np.zeros((2, 4))).shape == (2, 0, 3)


# ---------------------------------------------------------------- structures

DETECTIONS = Detections.create([[10, 10, 38, 38], [0, 0, 4, 4]], [0.9, 0.6], [2, 0])


def test_instance_masks_from_detections():
    probs = np.stack([_left_half_mask(28), np.zeros((28, 28), np.float32)])
    instances = instance_masks_from_detections(DETECTIONS, probs, 48, 48)
    assert isinstance(instances, InstanceMasks)
    np.testing.assert_array_equal(instances.masks, paste_masks(probs, DETECTIONS.boxes_xyxy, 48, 48))
    assert instances.masks[0].sum() == 28 * 14 and not instances.masks[1].any()
    np.testing.assert_array_equal(instances.scores, DETECTIONS.scores)
    np.testing.assert_array_equal(instances.class_ids, [2, 0])
    empty = instance_masks_from_detections(Detections.empty(), np.zeros((0, 28, 28)), 48, 48)
    assert empty.masks.shape == (0, 48, 48)


def test_poses_from_detections():
    heatmaps = np.zeros((2, NUM_KEYPOINTS, S, S), np.float32)
    heatmaps[:, :, 28, 14] = 20.0  # cell centre (14.5, 28.5) of 56 cells
    poses = poses_from_detections(DETECTIONS, heatmaps)
    assert isinstance(poses, Poses) and len(poses) == 2
    np.testing.assert_allclose(poses.keypoints[0, :, :2], np.tile([10 + 14.5 / 2, 10 + 28.5 / 2], (17, 1)))
    np.testing.assert_allclose(poses.keypoints[1, :, :2], np.tile([14.5 / 14, 28.5 / 14], (17, 1)), rtol=1e-6)
    peak = 1.0 / (1.0 + (S * S - 1) * np.exp(-20.0))  # spatial softmax of one logit 20 among zeros
    np.testing.assert_allclose(poses.keypoints[..., 2], peak, rtol=1e-6)
    np.testing.assert_allclose(poses.scores, DETECTIONS.scores * np.sqrt(peak), rtol=1e-6)  # exponent 0.5
    assert len(poses_from_detections(Detections.empty(), np.zeros((0, NUM_KEYPOINTS, S, S)))) == 0
    with pytest.raises(ValueError, match="17 keypoint channels"):
        poses_from_detections(DETECTIONS, heatmaps[:, :5])


def test_pose_scores_weigh_box_score_by_keypoint_confidence():
    box = np.array([0.9, 0.5, 0.8])
    keypoints = np.array([[0.04, 0.16], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(pose_scores(box, keypoints), [0.9 * 0.1 ** 0.5, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(pose_scores(box, keypoints, exponent=1.0), [0.09, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(pose_scores(box, keypoints, exponent=0.0), box.astype(np.float32))
    assert pose_scores(box, keypoints).dtype == np.float32
    assert pose_scores(np.zeros(0), np.zeros((0, 17))).shape == (0,)
    # a confident box with unsure keypoints ranks below a less confident box with sure keypoints
    ranked = pose_scores(np.array([0.95, 0.8]), np.array([[0.01] * 17, [0.3] * 17]))
    assert ranked[1] > ranked[0]
    with pytest.raises(ValueError, match="keypoint_scores must have shape"):
        pose_scores(box, keypoints[:2])
    with pytest.raises(ValueError, match="exponent must be >= 0"):
        pose_scores(box, keypoints, exponent=-1.0)
