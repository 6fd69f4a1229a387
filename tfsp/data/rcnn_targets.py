"""Mask R-CNN training targets for the RPN and the box head, in TensorFlow (graph-mode friendly).

Per example, fixed output shapes, no Python loops over boxes, so the functions run inside
``tf.data`` ``map`` and ``tf.function``. Randomness is stateless (``tf.random.stateless_uniform``
with an explicit ``(2,)`` int seed tensor): the same inputs and seed give the same samples.
Mask and keypoint targets of the sampled RoIs are in :mod:`tfsp.data.rcnn_head_targets`.

All boxes are ``[x0, y0, x1, y1]`` float32 in model-input pixels (pixel (i, j) covers
``[j, j + 1) x [i, i + 1)``, centre ``(j + 0.5, i + 0.5)``). Box coding is
:func:`tfsp.data.targets.encode_cxcywh_tf`, the TF twin of ``tfsp.postprocess.boxes.encode_cxcywh``,
with ``RPN_VARIANCES`` (RPN) and ``BOX_HEAD_VARIANCES`` (box head) from ``tfsp.postprocess.rcnn``,
so ``decode_cxcywh`` at inference inverts them exactly.

RPN (:func:`rpn_targets`, detectron2's ``Matcher`` with ``allow_low_quality_matches``):

1. IoU of every anchor with every valid ground-truth box (``gt_valid``: not padding, not crowd).
2. Positive (1): best IoU ``>= RPN_POSITIVE_IOU``, or the anchor has the highest IoU (> 0) of some
   valid box, ties included (every tied anchor is positive). The regression target is the box of
   highest IoU with the anchor (lowest index on ties), as in detectron2 (which keeps the argmax
   match for low-quality positives).
3. Negative (0): best IoU ``< RPN_NEGATIVE_IOU`` (every anchor when there is no valid box);
   ignore (-1): in between.
4. Crowd: a non-positive anchor whose intersection with a crowd box covers more than
   ``RPN_CROWD_IOA`` of the anchor's own area is ignored (no negatives on unlabelled crowds);
   crowd never demotes a positive.
5. Minibatch: at most ``int(num_samples * positive_fraction)`` positives drawn at random, then
   negatives up to ``num_samples`` (detectron2's ``subsample_labels``); the rest become -1.

Box head (:func:`sample_rois`, detectron2's ``label_and_sample_proposals``): the valid
ground-truth boxes are appended to the proposals, each candidate is foreground when its best IoU
with a valid box is ``>= ROI_FOREGROUND_IOU`` and background when it is in
``[ROI_BACKGROUND_IOU_LOW, ROI_FOREGROUND_IOU)`` (every candidate when there is no valid box);
up to ``int(num_rois * fg_fraction)`` foreground then background fill ``num_rois`` rows,
foreground first; missing rows are padding with weight 0.
"""

from __future__ import annotations

import tensorflow as tf

from tfsp.data.targets import argmax_first, encode_cxcywh_tf, iou_matrix_xyxy
from tfsp.postprocess.rcnn import BOX_HEAD_VARIANCES, RPN_VARIANCES

RPN_POSITIVE_IOU = 0.7
"""An anchor with best IoU at or above this is positive (detectron2 ``RPN.IOU_THRESHOLDS[1]``)."""

RPN_NEGATIVE_IOU = 0.3
"""An anchor with best IoU strictly below this is negative (detectron2 ``RPN.IOU_THRESHOLDS[0]``)."""

RPN_CROWD_IOA = 0.7
"""A non-positive anchor is ignored when more than this fraction of its area lies in one crowd box
(Detectron's ``CROWD_FILTER_THRESH``)."""

RPN_BATCH_SIZE = 256
"""Anchors sampled per image (detectron2 ``RPN.BATCH_SIZE_PER_IMAGE``)."""

RPN_POSITIVE_FRACTION = 0.5
"""At most this fraction of the sampled anchors is positive (``RPN.POSITIVE_FRACTION``)."""

RPN_POSITIVE, RPN_NEGATIVE, RPN_IGNORE = 1, 0, -1
"""RPN anchor labels."""

ROI_BATCH_SIZE = 256
"""RoIs sampled per image for the heads (detectron2 ``ROI_HEADS.BATCH_SIZE_PER_IMAGE``)."""

ROI_FOREGROUND_FRACTION = 0.25
"""At most this fraction of the sampled RoIs is foreground (``ROI_HEADS.POSITIVE_FRACTION``)."""

ROI_FOREGROUND_IOU = 0.5
"""A RoI with best IoU at or above this is foreground (``ROI_HEADS.IOU_THRESHOLDS``)."""

ROI_BACKGROUND_IOU_LOW = 0.0
"""Background RoIs have best IoU in ``[this, ROI_FOREGROUND_IOU)``."""

BACKGROUND_CLASS = 0
"""Box-head class of background RoIs; class k of the data is head class ``k + 1``."""

NO_MATCH = -1
"""``matched_gt`` of background and padding RoIs."""

_GROUP_OFFSET = 2.0
"""Sort-key offset between sample groups; uniform draws lie in [0, 1), so groups never mix."""


def _xyxy_to_cxcywh_tf(boxes_xyxy: tf.Tensor) -> tf.Tensor:
    """(..., 4) float32 ``[x0, y0, x1, y1]`` -> (..., 4) ``[cx, cy, w, h]`` (numpy op order)."""
    x0, y0, x1, y1 = tf.unstack(boxes_xyxy, num=4, axis=-1)
    return tf.stack([(x0 + x1) * 0.5, (y0 + y1) * 0.5, x1 - x0, y1 - y0], axis=-1)


def _with_padding_row(boxes: tf.Tensor, valid: tf.Tensor, *others: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Appends one invalid zero row so that reductions over boxes are defined when M == 0."""
    padded = [tf.concat([boxes, tf.zeros([1, 4], boxes.dtype)], axis=0),
              tf.concat([valid, [False]], axis=0)]
    padded += [tf.concat([x, tf.zeros([1], x.dtype)], axis=0) for x in others]
    return tuple(padded)


def _group_order(first: tf.Tensor, second: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random order with every ``first`` element, then every ``second``, then the rest.

    Args:
        first, second: (N,) bool, disjoint.
        seed: (2,) int32/int64 stateless seed.

    Returns:
        (N,) int32 permutation; within each group the order is uniformly random.
    """
    draw = tf.random.stateless_uniform(tf.shape(first), seed, dtype=tf.float32)
    group = tf.where(first, 0.0, tf.where(second, _GROUP_OFFSET, 2.0 * _GROUP_OFFSET))
    return tf.argsort(draw + group, stable=True)


def _box_coding(boxes_xyxy: tf.Tensor, reference_xyxy: tf.Tensor, use: tf.Tensor, variances) -> tf.Tensor:
    """``encode_cxcywh_tf`` of boxes w.r.t. references where ``use`` (N,), zeros elsewhere (no NaN)."""
    unit = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    reference = tf.where(use[:, None], reference_xyxy, unit)
    boxes = tf.where(use[:, None], boxes_xyxy, unit)
    deltas = encode_cxcywh_tf(boxes, _xyxy_to_cxcywh_tf(reference), variances)
    return tf.where(use[:, None], deltas, 0.0)


def rpn_targets(
    anchors_xyxy: tf.Tensor,
    gt_boxes_xyxy: tf.Tensor,
    gt_valid: tf.Tensor,
    seed: tf.Tensor,
    gt_crowd: tf.Tensor | None = None,
    num_samples: int = RPN_BATCH_SIZE,
    positive_fraction: float = RPN_POSITIVE_FRACTION,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Sampled RPN anchor labels and box deltas (rules in the module docstring).

    Args:
        anchors_xyxy: (A, 4) float32 anchors of all FPN levels concatenated in the order of
            ``tfsp.postprocess.rcnn.generate_fpn_anchors`` (and of the RPN outputs), input px.
        gt_boxes_xyxy: (M, 4) float32 ground-truth boxes, input px; M may be 0.
        gt_valid: (M,) bool, True for real non-crowd boxes (False for padding and crowd).
        seed: (2,) int32/int64 stateless seed of the minibatch sampling.
        gt_crowd: (M,) bool, True for crowd boxes (False for padding); None: no crowd.
        num_samples: anchors sampled per image.
        positive_fraction: at most ``int(num_samples * positive_fraction)`` positives.

    Returns:
        labels (A,) int32 in {1 positive, 0 negative, -1 ignore / not sampled}; deltas (A, 4)
        float32 ``encode_cxcywh`` of the matched box w.r.t. the anchor with ``RPN_VARIANCES``
        on positive anchors (also unsampled ones), zeros elsewhere.
    """
    anchors = tf.cast(anchors_xyxy, tf.float32)
    gt_crowd = tf.zeros_like(gt_valid, tf.bool) if gt_crowd is None else tf.cast(gt_crowd, tf.bool)
    boxes, valid, crowd = _with_padding_row(tf.cast(gt_boxes_xyxy, tf.float32), tf.cast(gt_valid, tf.bool),
                                            gt_crowd)
    iou = tf.where(valid[None, :], iou_matrix_xyxy(anchors, boxes), -1.0)  # (A, M + 1)
    best_iou = tf.reduce_max(iou, axis=1)
    matched_gt = argmax_first(iou, axis=1)
    best_of_gt = tf.reduce_max(iou, axis=0, keepdims=True)  # (1, M + 1)
    low_quality = tf.reduce_any((iou == best_of_gt) & (best_of_gt > 0.0), axis=1)
    positive = (best_iou >= RPN_POSITIVE_IOU) | low_quality
    negative = ~positive & (best_iou < RPN_NEGATIVE_IOU)

    inter_w = tf.minimum(anchors[:, None, 2], boxes[None, :, 2]) - tf.maximum(anchors[:, None, 0], boxes[None, :, 0])
    inter_h = tf.minimum(anchors[:, None, 3], boxes[None, :, 3]) - tf.maximum(anchors[:, None, 1], boxes[None, :, 1])
    intersection = tf.maximum(inter_w, 0.0) * tf.maximum(inter_h, 0.0)
    anchor_area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    in_crowd = tf.reduce_any(crowd[None, :] & (intersection > RPN_CROWD_IOA * anchor_area[:, None]), axis=1)
    negative &= ~in_crowd

    num_pos = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32)), int(num_samples * positive_fraction))
    num_neg = tf.minimum(tf.reduce_sum(tf.cast(negative, tf.int32)), num_samples - num_pos)
    order = _group_order(positive, negative, seed)
    rank = tf.math.invert_permutation(order)
    total_pos = tf.reduce_sum(tf.cast(positive, tf.int32))
    take_pos = positive & (rank < num_pos)
    take_neg = negative & (rank - total_pos < num_neg)
    labels = tf.where(take_pos, RPN_POSITIVE, tf.where(take_neg, RPN_NEGATIVE, RPN_IGNORE))
    deltas = _box_coding(tf.gather(boxes, matched_gt), anchors, positive, RPN_VARIANCES)
    return tf.cast(labels, tf.int32), deltas


def sample_rois(
    proposals_xyxy: tf.Tensor,
    gt_boxes_xyxy: tf.Tensor,
    gt_classes: tf.Tensor,
    gt_valid: tf.Tensor,
    seed: tf.Tensor,
    num_rois: int = ROI_BATCH_SIZE,
    fg_fraction: float = ROI_FOREGROUND_FRACTION,
    proposal_valid: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Samples RoIs for the box, mask and keypoint heads (rules in the module docstring).

    Args:
        proposals_xyxy: (P, 4) float32 RPN proposals, input px (treated as constants).
        gt_boxes_xyxy: (M, 4) float32 ground-truth boxes, input px; M may be 0.
        gt_classes: (M,) int class ids k >= 0 (any value on invalid rows).
        gt_valid: (M,) bool, True for real non-crowd boxes.
        seed: (2,) int32/int64 stateless seed.
        num_rois: R, fixed number of output rows.
        fg_fraction: at most ``int(num_rois * fg_fraction)`` foreground RoIs.
        proposal_valid: (P,) bool, False for padded proposals; None: all valid.

    Returns:
        dict of ``rois`` (R, 4) float32 input px (zeros on padding rows), ``roi_classes`` (R,)
        int32 (0 background / padding, ``k + 1`` for class k), ``box_targets`` (R, 4) float32
        ``encode_cxcywh`` of the matched box w.r.t. the RoI with ``BOX_HEAD_VARIANCES`` (zeros
        unless foreground), ``matched_gt`` (R,) int32 row of ``gt_boxes_xyxy`` (-1 unless
        foreground), ``roi_weights`` (R,) float32 (1 sampled, 0 padding). Foreground rows first.
    """
    proposals = tf.cast(proposals_xyxy, tf.float32)
    gt_valid = tf.cast(gt_valid, tf.bool)
    if proposal_valid is None:
        proposal_valid = tf.ones(tf.shape(proposals)[:1], tf.bool)
    boxes, valid = _with_padding_row(tf.cast(gt_boxes_xyxy, tf.float32), gt_valid)
    candidates = tf.concat([proposals, boxes], axis=0)  # (P + M + 1, 4)
    candidate_valid = tf.concat([tf.cast(proposal_valid, tf.bool), valid], axis=0)
    iou = tf.where(valid[None, :], iou_matrix_xyxy(candidates, boxes), -1.0)
    best_iou = tf.reduce_max(iou, axis=1)
    matched = argmax_first(iou, axis=1)
    foreground = candidate_valid & (best_iou >= ROI_FOREGROUND_IOU)
    background = candidate_valid & ~foreground & (tf.maximum(best_iou, 0.0) >= ROI_BACKGROUND_IOU_LOW)

    total_fg = tf.reduce_sum(tf.cast(foreground, tf.int32))
    num_fg = tf.minimum(total_fg, int(num_rois * fg_fraction))
    num_bg = tf.minimum(tf.reduce_sum(tf.cast(background, tf.int32)), num_rois - num_fg)
    order = _group_order(foreground, background, seed)
    row = tf.range(num_rois)
    position = tf.where(row < num_fg, row, row - num_fg + total_fg)
    index = tf.gather(order, tf.minimum(position, tf.shape(order)[0] - 1))
    is_fg = row < num_fg
    weight = row < num_fg + num_bg

    rois = tf.where(weight[:, None], tf.gather(candidates, index), 0.0)
    matched_gt = tf.where(is_fg, tf.gather(matched, index), NO_MATCH)
    safe_gt = tf.maximum(matched_gt, 0)
    classes = tf.concat([tf.cast(gt_classes, tf.int32), [0]], axis=0)
    roi_classes = tf.where(is_fg, tf.gather(classes, safe_gt) + 1, BACKGROUND_CLASS)
    box_targets = _box_coding(tf.gather(boxes, safe_gt), rois, is_fg, BOX_HEAD_VARIANCES)
    return {
        "rois": rois,
        "roi_classes": tf.cast(roi_classes, tf.int32),
        "box_targets": box_targets,
        "matched_gt": tf.cast(matched_gt, tf.int32),
        "roi_weights": tf.cast(weight, tf.float32),
    }
