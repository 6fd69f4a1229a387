"""Mask R-CNN mask and keypoint head targets of sampled RoIs, in TensorFlow (graph-mode friendly).

Inputs are the RoIs and ``matched_gt`` of :func:`tfsp.data.rcnn_targets.sample_rois` (``-1`` for
background and padding rows); fixed shapes, no Python loops over boxes. Boxes and keypoints are
float32 model-input pixels (pixel (i, j) covers ``[j, j + 1) x [i, i + 1)``, centre
``(j + 0.5, i + 0.5)``; keypoints use the same continuous frame, see ``tfsp.data.keypoints``).

Masks: the ``(K, K)`` ground-truth mask of the pipeline covers the whole ``S x S`` input, so mask
cell (i, j) covers input pixels ``[j * S / K, (j + 1) * S / K) x [i * S / K, (i + 1) * S / K)``
and is a one-channel feature map in the RoIAlign convention of ``tfsp.postprocess.roi_align``
after scaling boxes by ``K / S``. Each RoI's target is ``roi_align_tf`` of its matched mask
(sampling ratio ``MASK_TARGET_SAMPLING_RATIO``): soft values in [0, 1]; detectron2 binarises its
targets at 0.5 (``BitMasks.crop_and_resize``), a loss may do the same.

Keypoints (detectron2's ``keypoints_to_heatmap`` in our half-pixel frame): a RoI
``[x0, y0, x1, y1]`` is cut into ``H x H`` cells (H = ``heatmap_size``); the keypoint ``(x, y)``
lies in cell ``(row, col) = (floor((y - y0) * (H / (y1 - y0))), floor((x - x0) * (H / (x1 - x0))))``,
except that ``x == x1`` (``y == y1``) goes to the last column (row). Cell centres decode back with
``tfsp.postprocess.rcnn_masks.decode_keypoint_heatmaps`` (``x0 + (col + 0.5) * w / H``), so an
encoded keypoint decodes to within half a cell. The target is the flat index ``row * H + col``
for the spatial-softmax cross-entropy over the ``H * H`` cells of each keypoint channel.
"""

from __future__ import annotations

import tensorflow as tf

from tfsp.data.roi_align_tf import roi_align_tf

MASK_TARGET_SIZE = 28
"""Mask head output side, in cells (detectron2 ``ROI_MASK_HEAD`` 14 x 14 pooled, upsampled x2)."""

MASK_TARGET_SAMPLING_RATIO = 2
"""RoIAlign sample points per bin side when cutting mask targets."""

KEYPOINT_HEATMAP_SIZE = 56
"""Keypoint head output side, in cells (detectron2 ``ROI_KEYPOINT_HEAD``: 14 x 14 upsampled x4)."""

KEYPOINT_VISIBLE_MIN = 0.0
"""A keypoint is labelled when its COCO visibility flag is strictly above this (1 or 2)."""


def mask_targets(
    gt_masks: tf.Tensor,
    rois_xyxy: tf.Tensor,
    matched_gt: tf.Tensor,
    input_size: int,
    mask_size: int = MASK_TARGET_SIZE,
) -> tf.Tensor:
    """RoIAlign of each RoI's matched ground-truth mask (conventions in the module docstring).

    Args:
        gt_masks: (M, K, K) float32 soft masks in [0, 1] covering the whole input.
        rois_xyxy: (R, 4) float32 RoIs, input px.
        matched_gt: (R,) int row of ``gt_masks`` per RoI, -1 for background / padding.
        input_size: S, the square model input side in pixels.
        mask_size: output side in cells.

    Returns:
        (R, mask_size, mask_size) float32 in [0, 1]; all zeros where ``matched_gt < 0``.
    """
    masks = tf.cast(gt_masks, tf.float32)
    matched_gt = tf.cast(matched_gt, tf.int32)
    foreground = matched_gt >= 0
    shape = tf.shape(masks)
    boxes = tf.cast(rois_xyxy, tf.float32) * (tf.cast(shape[1], tf.float32) / float(input_size))
    # One mask per RoI, (R, K, K, 1), so RoI r reads map r; unmatched RoIs read an extra zero mask.
    table = tf.concat([masks, tf.zeros([1, shape[1], shape[2]], tf.float32)], axis=0)
    per_roi = tf.gather(table, tf.where(foreground, matched_gt, shape[0]))[..., None]
    cut = roi_align_tf(per_roi, boxes[:, None, :], mask_size, MASK_TARGET_SAMPLING_RATIO)
    cut = tf.reshape(cut, [-1, mask_size, mask_size])
    return tf.where(foreground[:, None, None], cut, 0.0)


def keypoint_targets(
    gt_keypoints: tf.Tensor,
    rois_xyxy: tf.Tensor,
    matched_gt: tf.Tensor,
    heatmap_size: int = KEYPOINT_HEATMAP_SIZE,
    gt_is_person: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Flat heatmap cell of every keypoint of each RoI's matched person (module docstring).

    Args:
        gt_keypoints: (M, J, 3) float32 ``[x, y, v]``: input px and COCO visibility (J = 17).
        rois_xyxy: (R, 4) float32 RoIs, input px.
        matched_gt: (R,) int row of ``gt_keypoints`` per RoI, -1 for background / padding.
        heatmap_size: H, cells per heatmap side.
        gt_is_person: (M,) bool, boxes that carry keypoints; None: every box (non-person rows
            then have v = 0 everywhere, as the pipeline pads them).

    Returns:
        indices (R, J) int32 flat cell ``row * H + col`` (0 where invalid); valid (R, J) bool:
        labelled (``v > KEYPOINT_VISIBLE_MIN``), inside the RoI (``x0 <= x <= x1``,
        ``y0 <= y <= y1``), RoI foreground, matched box a person, RoI of positive size.
    """
    keypoints = tf.cast(gt_keypoints, tf.float32)
    matched_gt = tf.cast(matched_gt, tf.int32)
    rois = tf.cast(rois_xyxy, tf.float32)
    count = tf.shape(keypoints)[0]
    if gt_is_person is None:
        gt_is_person = tf.ones([count], tf.bool)
    # Unmatched RoIs read one extra unlabelled non-person row (also defined when M == 0).
    person = tf.concat([tf.cast(gt_is_person, tf.bool), [False]], axis=0)
    safe_gt = tf.where(matched_gt >= 0, matched_gt, count)
    per_roi = tf.gather(tf.concat([keypoints, tf.zeros([1, tf.shape(keypoints)[1], 3])], axis=0), safe_gt)
    x, y, visibility = per_roi[..., 0], per_roi[..., 1], per_roi[..., 2]
    x0, y0, x1, y1 = (rois[:, None, k] for k in range(4))
    positive_size = (x1 > x0) & (y1 > y0)
    size = float(heatmap_size)
    scale_x = size / tf.where(positive_size, x1 - x0, 1.0)
    scale_y = size / tf.where(positive_size, y1 - y0, 1.0)
    col = tf.floor((x - x0) * scale_x)
    row = tf.floor((y - y0) * scale_y)
    col = tf.where(x == x1, size - 1.0, col)
    row = tf.where(y == y1, size - 1.0, row)
    inside = (col >= 0.0) & (row >= 0.0) & (col < size) & (row < size)
    valid = ((visibility > KEYPOINT_VISIBLE_MIN) & inside & positive_size
             & ((matched_gt >= 0) & tf.gather(person, safe_gt))[:, None])
    last = size - 1.0
    flat = (tf.cast(tf.clip_by_value(row, 0.0, last), tf.int32) * heatmap_size
            + tf.cast(tf.clip_by_value(col, 0.0, last), tf.int32))
    return tf.where(valid, flat, 0), valid
