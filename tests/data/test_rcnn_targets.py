"""Mask R-CNN training targets: golden cases, numpy references, sampling rules, tf.function."""

import numpy as np
import pytest
import tensorflow as tf

from tfsp.data.rcnn_head_targets import keypoint_targets, mask_targets
from tfsp.data.rcnn_targets import (RPN_CROWD_IOA, RPN_NEGATIVE_IOU, RPN_POSITIVE_IOU, rpn_targets,
                                    sample_rois)
from tfsp.data.roi_align_tf import TF_PARITY_ATOL
from tfsp.postprocess.boxes import decode_cxcywh, encode_cxcywh, iou_xyxy, xyxy_to_cxcywh
from tfsp.postprocess.rcnn import BOX_HEAD_VARIANCES, RPN_VARIANCES, FpnAnchorConfig, generate_fpn_anchors
from tfsp.postprocess.roi_align import roi_align

SEED = tf.constant([3, 7], tf.int64)
GT = np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)


def rpn_labels_reference(anchors, gt, valid, crowd):
    """numpy RPN labels before sampling (1 / 0 / -1) and the matched box of each anchor."""
    iou = np.where(valid[None, :], iou_xyxy(anchors, gt), -1.0)
    best = iou.max(axis=1) if gt.shape[0] else np.full(len(anchors), -1.0)
    matched = iou.argmax(axis=1) if gt.shape[0] else np.zeros(len(anchors), int)
    positive = best >= RPN_POSITIVE_IOU
    for m in np.flatnonzero(valid):
        if iou[:, m].max() > 0:
            positive |= iou[:, m] == iou[:, m].max()
    lower = np.maximum(anchors[:, None, :2], gt[None, :, :2])
    upper = np.minimum(anchors[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.maximum(upper - lower, 0), axis=-1)
    area = np.prod(anchors[:, 2:] - anchors[:, :2], axis=-1)
    in_crowd = np.any(crowd[None, :] & (inter > RPN_CROWD_IOA * area[:, None]), axis=1)
    negative = ~positive & (best < RPN_NEGATIVE_IOU) & ~in_crowd
    return np.where(positive, 1, np.where(negative, 0, -1)), matched


def keypoint_reference(keypoints, rois, matched, size, is_person):
    """numpy loops: detectron2's keypoints_to_heatmap per (RoI, keypoint), float32."""
    indices = np.zeros((len(rois), keypoints.shape[1]), np.int32)
    valid = np.zeros_like(indices, bool)
    for r, (x0, y0, x1, y1) in enumerate(rois.astype(np.float32)):
        if matched[r] < 0 or not is_person[matched[r]] or x1 <= x0 or y1 <= y0:
            continue
        for j, (x, y, v) in enumerate(keypoints[matched[r]].astype(np.float32)):
            col = size - 1 if x == x1 else np.floor((x - x0) * (np.float32(size) / (x1 - x0)))
            row = size - 1 if y == y1 else np.floor((y - y0) * (np.float32(size) / (y1 - y0)))
            if v > 0 and 0 <= col < size and 0 <= row < size:
                indices[r, j], valid[r, j] = int(row) * size + int(col), True
    return indices, valid


def _rpn(anchors, gt, valid, crowd=None, **kwargs):
    labels, deltas = rpn_targets(tf.constant(anchors, tf.float32), tf.constant(gt, tf.float32),
                                 tf.constant(valid), SEED, None if crowd is None else tf.constant(crowd), **kwargs)
    return labels.numpy(), deltas.numpy()


def test_rpn_golden_thresholds():
    # IoUs with the box [0, 0, 10, 10]: 1.0, 0.8, 0.6, 0.2, 0.
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 6], [0, 0, 10, 2], [20, 20, 30, 30]], np.float32)
    labels, deltas = _rpn(anchors, GT, [True])
    np.testing.assert_array_equal(labels, [1, 1, -1, 0, 0])
    np.testing.assert_allclose(deltas[1], [0, (5 - 4) / 8, 0, np.log(10 / 8)], atol=1e-6)  # variances 1
    np.testing.assert_array_equal(deltas[2:], 0)


def test_rpn_best_anchor_of_each_gt_with_ties_and_argmax_deltas():
    anchors = np.array([[0, 0, 10, 5], [0, 5, 10, 10], [0, 0, 10, 4], [0, 0, 4, 10]], np.float32)  # 0.5 0.5 0.4 0.4
    labels, deltas = _rpn(anchors, GT, [True])
    np.testing.assert_array_equal(labels, [1, 1, -1, -1])
    expected = encode_cxcywh(GT, xyxy_to_cxcywh(anchors[:2]), RPN_VARIANCES)
    np.testing.assert_allclose(deltas[:2], expected, atol=1e-6)
    # A padded (invalid) box and a box overlapping nothing create no positives.
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [100, 100, 110, 110]], np.float32)
    labels, _ = _rpn(anchors, gt, [False, False, True])
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])


def test_rpn_crowd_ignores_negatives_inside_only():
    gt = np.array([[0, 0, 10, 10], [0, 0, 100, 100]], np.float32)
    anchors = np.array([[0, 0, 10, 10], [40, 40, 60, 60], [90, 90, 110, 110], [200, 200, 210, 210]], np.float32)
    labels, _ = _rpn(anchors, gt, [True, False], crowd=[False, True])
    np.testing.assert_array_equal(labels, [1, -1, 0, 0])  # IoA 1 -> ignore; IoA 0.25 -> negative


def test_rpn_sampling_caps_positives_and_is_deterministic():
    positives = np.tile(GT, (300, 1))
    negatives = np.tile(np.array([[50, 50, 60, 60]], np.float32), (1000, 1))
    anchors = np.concatenate([positives, negatives])
    labels, deltas = _rpn(anchors, GT, [True])
    assert np.sum(labels == 1) == 128 and np.sum(labels == 0) == 128
    assert np.all(labels[:300] != 0) and np.all(labels[300:] != 1)
    np.testing.assert_array_equal(deltas[:300], 0)  # deltas of positives (here exact matches) are 0
    again, _ = _rpn(anchors, GT, [True])
    np.testing.assert_array_equal(labels, again)
    other, _ = rpn_targets(tf.constant(anchors), tf.constant(GT), tf.constant([True]), tf.constant([4, 7]))
    assert not np.array_equal(labels, other.numpy())
    few, _ = _rpn(np.concatenate([positives[:10], negatives]), GT, [True])
    assert np.sum(few == 1) == 10 and np.sum(few == 0) == 246


def test_rpn_matches_numpy_reference_on_fpn_anchors():
    rng = np.random.default_rng(0)
    anchors = np.concatenate(generate_fpn_anchors(FpnAnchorConfig(image_size=64)))
    corners = rng.uniform(0, 64, (6, 2, 2)).astype(np.float32)
    gt = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    valid, crowd = np.array([1, 1, 1, 0, 1, 0], bool), np.array([0, 0, 0, 1, 0, 0], bool)
    labels, deltas = _rpn(anchors, gt, valid, crowd, num_samples=len(anchors), positive_fraction=1.0)
    expected, matched = rpn_labels_reference(anchors, gt, valid, crowd)
    np.testing.assert_array_equal(labels, expected)
    assert np.sum(labels == 1) >= valid.sum() and np.any(labels == -1)
    positive = labels == 1
    encoded = encode_cxcywh(gt[matched[positive]], xyxy_to_cxcywh(anchors[positive]), RPN_VARIANCES)
    np.testing.assert_allclose(deltas[positive], encoded, rtol=1e-5, atol=1e-5)
    empty, _ = _rpn(anchors, np.zeros((0, 4), np.float32), np.zeros(0, bool))
    assert np.sum(empty == 0) == 256 and np.sum(empty == 1) == 0


def _sample(proposals, gt, classes, valid, **kwargs):
    out = sample_rois(tf.constant(proposals, tf.float32), tf.constant(gt, tf.float32), tf.constant(classes),
                      tf.constant(valid), SEED, **kwargs)
    return {key: value.numpy() for key, value in out.items()}


def test_sample_rois_appends_gt_and_pads():
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 30], [0, 0, 5, 5]], np.float32)
    proposals = np.array([[50, 50, 60, 60], [0, 0, 10, 3], [60, 0, 64, 9]], np.float32)  # all background
    out = _sample(proposals, gt, [4, 1, 2], [True, True, False], num_rois=8)
    np.testing.assert_array_equal(out["roi_weights"], [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.sort(out["matched_gt"][:2]), [0, 1])
    np.testing.assert_array_equal(out["matched_gt"][2:], -1)
    np.testing.assert_array_equal(out["rois"][:2], gt[out["matched_gt"][:2]])  # the GT boxes themselves
    np.testing.assert_array_equal(out["roi_classes"], [[5, 2][m] if m >= 0 else 0 for m in out["matched_gt"]])
    np.testing.assert_array_equal(np.sort(out["rois"][2:5], axis=0), np.sort(proposals, axis=0))
    np.testing.assert_array_equal(out["rois"][5:], 0)
    np.testing.assert_array_equal(out["box_targets"], 0)  # GT boxes encode to 0, the rest are not foreground


def test_sample_rois_fg_fraction_and_box_targets_decode_to_gt():
    rng = np.random.default_rng(1)
    gt = np.array([[10, 10, 50, 40], [60, 20, 120, 90]], np.float32)
    jitter = rng.uniform(-2, 2, (200, 4)).astype(np.float32)
    fg_proposals = gt[np.arange(200) % 2] + jitter  # IoU well above 0.5
    bg_proposals = rng.uniform(130, 200, (500, 2)).astype(np.float32)[:, [0, 1, 0, 1]] + [0, 0, 20, 20]
    proposals = np.concatenate([fg_proposals, bg_proposals])
    out = _sample(proposals, gt, [0, 3], [True, True])
    fg = out["matched_gt"] >= 0
    assert fg.sum() == 64 and np.all(fg[:64]) and np.all(out["roi_weights"] == 1)
    np.testing.assert_array_equal(out["roi_classes"][fg], np.where(out["matched_gt"][fg] == 0, 1, 4))
    np.testing.assert_array_equal(out["roi_classes"][~fg], 0)
    assert np.all(iou_xyxy(out["rois"][~fg], gt) < 0.5)
    decoded = decode_cxcywh(out["box_targets"][fg], xyxy_to_cxcywh(out["rois"][fg]), BOX_HEAD_VARIANCES)
    np.testing.assert_allclose(decoded, gt[out["matched_gt"][fg]], atol=1e-3)
    # Fewer foreground than the quota: all of them, background fills the rest.
    few = _sample(proposals[195:], gt, [0, 3], [True, True], num_rois=32)
    assert np.sum(few["matched_gt"] >= 0) == 7 and np.all(few["roi_weights"] == 1)


def test_sample_rois_without_gt_and_with_padded_proposals():
    proposals = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 20, 20]], np.float32)
    out = _sample(proposals, np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool), num_rois=4,
                  proposal_valid=tf.constant([True, False, True]))
    np.testing.assert_array_equal(out["roi_weights"], [1, 1, 0, 0])
    np.testing.assert_array_equal(out["roi_classes"], 0)
    np.testing.assert_array_equal(out["matched_gt"], -1)


def test_mask_target_of_full_box_mask_is_one_inside():
    masks = np.zeros((2, 32, 32), np.float32)
    masks[0, 8:24, 8:24] = 1.0  # input pixels [16, 48) of a 64 px input
    masks[1, :, :16] = 1.0
    rois = np.array([[16, 16, 48, 48], [0, 0, 64, 64], [16, 16, 48, 48]], np.float32)
    got = mask_targets(tf.constant(masks), tf.constant(rois), tf.constant([0, 1, -1]), input_size=64).numpy()
    assert got.shape == (3, 28, 28) and got.min() >= 0 and got.max() <= 1
    np.testing.assert_array_equal(got[0, 1:-1, 1:-1], 1.0)
    assert 0.5 < got[0, 0, 0] < 1.0  # the outermost bins straddle the mask edge
    np.testing.assert_array_equal(got[1][:, :13], 1.0)  # bins 13, 14 straddle the edge at mask x = 16
    np.testing.assert_allclose(got[1][:, 13:15], np.broadcast_to([(1 + 11 / 14) / 2, 3 / 28], (28, 2)), atol=1e-6)
    np.testing.assert_array_equal(got[1][:, 15:], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)


def test_mask_targets_match_numpy_roi_align():
    rng = np.random.default_rng(2)
    masks = rng.uniform(size=(3, 16, 16)).astype(np.float32)
    rois = np.concatenate([rng.uniform(-10, 60, (5, 2)), rng.uniform(70, 140, (5, 2))], 1).astype(np.float32)
    matched = np.array([2, 0, -1, 1, 2])
    got = mask_targets(tf.constant(masks), tf.constant(rois), tf.constant(matched), input_size=128,
                       mask_size=14).numpy()
    for r, m in enumerate(matched):
        expected = 0.0 if m < 0 else roi_align(masks[m][..., None], rois[r : r + 1] / 8.0, 14, 2)[0, ..., 0]
        np.testing.assert_allclose(got[r], expected, rtol=0, atol=TF_PARITY_ATOL)


def test_keypoint_golden_indices_and_validity():
    keypoints = np.zeros((2, 17, 3), np.float32)
    keypoints[0, :7] = [[10, 20, 2], [15.5, 30.2, 1], [66, 76, 2], [66.01, 50, 2], [9.99, 50, 2], [30, 40, 0],
                        [65.99, 75.99, 2]]
    keypoints[1, 0] = [30, 40, 2]
    rois = np.array([[10, 20, 66, 76], [0, 0, 28, 28], [10, 20, 66, 76], [10, 20, 66, 76]], np.float32)
    keypoints_roi1 = np.array([3.3, 7.6, 2], np.float32)
    keypoints[0, 7] = keypoints_roi1
    indices, valid = keypoint_targets(tf.constant(keypoints), tf.constant(rois), tf.constant([0, 0, -1, 1]),
                                      gt_is_person=tf.constant([True, False]))
    indices, valid = indices.numpy(), valid.numpy()
    np.testing.assert_array_equal(valid[0, :8], [1, 1, 1, 0, 0, 0, 1, 0])  # 7: outside RoI 0
    np.testing.assert_array_equal(indices[0, :3], [0, 10 * 56 + 5, 55 * 56 + 55])  # x == x1 -> last column
    assert indices[0, 6] == 55 * 56 + 55
    assert valid[1, 7] and indices[1, 7] == 15 * 56 + 6  # RoI of 28 px: 2 cells per pixel
    assert not valid[2].any() and not valid[3].any()  # background RoI; RoI matched to a non-person
    np.testing.assert_array_equal(indices[~valid], 0)


def test_keypoints_match_numpy_reference():
    rng = np.random.default_rng(3)
    keypoints = np.concatenate([rng.uniform(0, 100, (4, 17, 2)), rng.integers(0, 3, (4, 17, 1))], -1)
    keypoints = keypoints.astype(np.float32)
    corners = rng.uniform(0, 100, (30, 2, 2)).astype(np.float32)
    rois = np.concatenate([corners.min(1), corners.max(1)], 1)
    rois[0] = keypoints[1, 0, [0, 1, 0, 1]]  # zero-size RoI
    matched = rng.integers(-1, 4, 30)
    person = np.array([True, True, False, True])
    got = keypoint_targets(tf.constant(keypoints), tf.constant(rois), tf.constant(matched), 8, tf.constant(person))
    expected = keypoint_reference(keypoints, rois, matched, 8, person)
    np.testing.assert_array_equal(got[0].numpy(), expected[0])
    np.testing.assert_array_equal(got[1].numpy(), expected[1])
    assert expected[1].sum() > 10


def test_all_targets_run_in_tf_function_with_unknown_sizes():
    spec = tf.TensorSpec
    signature = [spec([None, 4], tf.float32), spec([None, 4], tf.float32), spec([None], tf.int32),
                 spec([None], tf.bool), spec([None, None, None], tf.float32), spec([None, 17, 3], tf.float32),
                 spec([2], tf.int64)]

    @tf.function(input_signature=signature)
    def targets(anchors, gt, classes, valid, masks, keypoints, seed):
        labels, deltas = rpn_targets(anchors, gt, valid, seed)
        rois = sample_rois(anchors, gt, classes, valid, seed, num_rois=16)
        mask = mask_targets(masks, rois["rois"], rois["matched_gt"], input_size=64)
        heat = keypoint_targets(keypoints, rois["rois"], rois["matched_gt"])
        return labels, deltas, rois, mask, heat

    anchors = np.concatenate(generate_fpn_anchors(FpnAnchorConfig(image_size=64)))
    gt = np.array([[8, 8, 40, 40], [0, 0, 0, 0]], np.float32)
    masks, keypoints = np.ones((2, 16, 16), np.float32), np.full((2, 17, 3), 20, np.float32)
    labels, deltas, rois, mask, (indices, valid) = targets(anchors, gt, tf.constant([0, -1]),
                                                          tf.constant([True, False]), masks, keypoints, SEED)
    assert labels.shape == (len(anchors),) and deltas.shape == (len(anchors), 4)
    assert mask.shape == (16, 28, 28) and indices.shape == (16, 17) and valid.numpy().any()
    fg = rois["matched_gt"].numpy() >= 0
    assert fg.any() and np.all(mask.numpy()[~fg] == 0)
    np.testing.assert_allclose(mask.numpy()[fg].max(axis=(1, 2)), 1.0, rtol=1e-6)  # sample weights sum to 1 (rounding)
    empty = targets(anchors, np.zeros((0, 4), np.float32), tf.zeros([0], tf.int32), tf.zeros([0], tf.bool),
                    np.zeros((0, 16, 16), np.float32), np.zeros((0, 17, 3), np.float32), SEED)
    assert np.sum(empty[0].numpy() == 0) == 256 and not empty[4][1].numpy().any()


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_sample_rois_fraction_parameter(fraction):
    proposals = np.tile(GT, (100, 1))
    out = _sample(proposals, GT, [0], [True], num_rois=16, fg_fraction=fraction)
    assert np.sum(out["matched_gt"] >= 0) == int(16 * fraction) and np.sum(out["roi_weights"]) == int(16 * fraction)
