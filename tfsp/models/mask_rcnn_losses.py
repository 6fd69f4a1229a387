"""Mask R-CNN training losses (TensorFlow), as detectron2's defaults; pure functions on fixed shapes.

Normalisation follows detectron2: the RPN terms are divided by the number of sampled anchors
(``B * rpn_batch_size``), the box-head terms by the number of sampled RoIs, the mask loss is the
mean per-pixel BCE over foreground RoIs and the keypoint loss the mean spatial-softmax cross-entropy
over labelled keypoints. Every denominator is at least 1, so empty batches give 0, never NaN.
Box regression uses ``smooth_l1`` with ``SMOOTH_L1_BETA`` (0: plain L1, detectron2's default).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfsp.postprocess.rcnn import BOX_COORDS

SMOOTH_L1_BETA = 0.0
"""Smooth-L1 transition point; 0 gives L1 (detectron2 ``SMOOTH_L1_BETA`` of the RPN and box head)."""

MASK_TARGET_THRESHOLD = 0.5
"""Soft RoIAligned mask targets are binarised at this value (detectron2's ``crop_and_resize >= 0.5``)."""


def smooth_l1(diff: tf.Tensor, beta: float = SMOOTH_L1_BETA) -> tf.Tensor:
    """Element-wise smooth-L1 of ``diff`` (any shape, float32); ``beta == 0`` is ``|diff|``."""
    absolute = tf.abs(diff)
    if beta <= 0.0:
        return absolute
    return tf.where(absolute < beta, 0.5 * tf.square(diff) / beta, absolute - 0.5 * beta)


def _at_least_one(count: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.cast(count, tf.float32), 1.0)


def rpn_losses(objectness: Sequence[tf.Tensor], deltas: Sequence[tf.Tensor], labels: tf.Tensor,
               targets: tf.Tensor, batch_size_per_image: int) -> tuple[tf.Tensor, tf.Tensor]:
    """RPN objectness BCE over sampled anchors and box L1 over sampled positives.

    Args:
        objectness: per level, (B, H_l, W_l, A) float32 logits.
        deltas: per level, (B, H_l, W_l, 4A) float32 predicted ``(dx, dy, dw, dh)``.
        labels: (B, N) int32 (1 positive, 0 negative, -1 ignored), N = all levels' anchors.
        targets: (B, N, 4) float32 target deltas (``RPN_VARIANCES`` coding).
        batch_size_per_image: anchors sampled per image (the normaliser).

    Returns:
        (objectness loss, box loss), scalars float32.
    """
    batch = tf.shape(labels)[0]
    logits = tf.concat([tf.reshape(o, [batch, -1]) for o in objectness], axis=1)
    predicted = tf.concat([tf.reshape(d, [batch, -1, BOX_COORDS]) for d in deltas], axis=1)
    sampled, positive = labels >= 0, labels > 0
    norm = _at_least_one(batch * batch_size_per_image)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(positive, tf.float32), logits=logits)
    objectness_loss = tf.reduce_sum(tf.where(sampled, bce, 0.0)) / norm
    box = tf.reduce_sum(smooth_l1(predicted - tf.cast(targets, tf.float32)), axis=-1)
    return objectness_loss, tf.reduce_sum(tf.where(positive, box, 0.0)) / norm


def box_head_losses(class_logits: tf.Tensor, box_deltas: tf.Tensor, roi_classes: tf.Tensor,
                    box_targets: tf.Tensor, roi_weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Softmax CE over sampled RoIs and L1 on the ground-truth class's deltas of foreground RoIs.

    Args:
        class_logits: (N, C + 1) float32 (0 background, ``k + 1`` class k).
        box_deltas: (N, 4C) float32 per-class deltas.
        roi_classes: (N,) int32 head classes (0 background / padding).
        box_targets: (N, 4) float32 (``BOX_HEAD_VARIANCES`` coding), zeros unless foreground.
        roi_weights: (N,) float32, 1 for sampled rows, 0 for padding.

    Returns:
        (classification loss, regression loss), scalars float32.
    """
    count = _at_least_one(tf.reduce_sum(roi_weights))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=roi_classes, logits=class_logits)
    classification = tf.reduce_sum(ce * roi_weights) / count
    per_class = tf.reshape(box_deltas, [tf.shape(box_deltas)[0], -1, BOX_COORDS])
    picked = tf.gather(per_class, tf.maximum(roi_classes - 1, 0), batch_dims=1)
    foreground = (roi_classes > 0) & (roi_weights > 0.0)
    error = tf.reduce_sum(smooth_l1(picked - box_targets), axis=-1)
    return classification, tf.reduce_sum(tf.where(foreground, error, 0.0)) / count


def mask_loss(mask_logits: tf.Tensor, roi_classes: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Per-pixel BCE on each foreground RoI's ground-truth class channel.

    Args:
        mask_logits: (N, M, M, C) float32.
        roi_classes: (N,) int32 head classes (0: not foreground, ignored).
        targets: (N, M, M) float32 soft targets in [0, 1], binarised at ``MASK_TARGET_THRESHOLD``.

    Returns:
        Scalar float32: mean over foreground RoIs of the mean per-pixel BCE.
    """
    channels = tf.transpose(mask_logits, [0, 3, 1, 2])
    logits = tf.gather(channels, tf.maximum(roi_classes - 1, 0), batch_dims=1)
    labels = tf.cast(targets >= MASK_TARGET_THRESHOLD, tf.float32)
    per_roi = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=[1, 2])
    foreground = roi_classes > 0
    count = _at_least_one(tf.reduce_sum(tf.cast(foreground, tf.int32)))
    return tf.reduce_sum(tf.where(foreground, per_roi, 0.0)) / count


def keypoint_loss(keypoint_logits: tf.Tensor, indices: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Spatial-softmax cross-entropy over the ``H * H`` cells of each labelled keypoint.

    Args:
        keypoint_logits: (N, H, H, J) float32 heatmap logits.
        indices: (N, J) int32 flat target cell ``row * H + col``.
        valid: (N, J) bool labelled keypoints.

    Returns:
        Scalar float32: mean cross-entropy over valid keypoints (0 when there are none).
    """
    shape = tf.shape(keypoint_logits)
    flat = tf.reshape(tf.transpose(keypoint_logits, [0, 3, 1, 2]), [shape[0], shape[3], shape[1] * shape[2]])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=indices, logits=flat)
    return tf.reduce_sum(tf.where(valid, ce, 0.0)) / _at_least_one(tf.reduce_sum(tf.cast(valid, tf.int32)))

