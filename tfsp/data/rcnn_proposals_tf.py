"""RPN proposals at training time, in TensorFlow (twin of ``tfsp.postprocess.rcnn.generate_proposals``).

The same steps as the numpy version used at inference, batched with fixed shapes so they run
inside a ``tf.function`` train step:

1. per level, the ``pre_nms_top_k`` anchors with the highest objectness logit (``tf.math.top_k``:
   ties by ascending index, like the numpy stable argsort); decode their deltas with
   ``config.variances``, ``dw * v_w`` and ``dh * v_h`` capped at ``DECODE_MAX_LOG_SCALE``
   (``log(1000 / 16)``) before ``exp``;
2. rows with a non-finite logit or box, or whose clipped box is not wider and taller than
   ``min_size_px``, are dropped (score ``DROPPED_SCORE``); boxes are clipped to ``[0, S] x [0, S]``;
3. NMS per level (boxes of level i are shifted by ``i * (S + 1)`` pixels, so levels never overlap,
   detectron2's ``batched_nms`` trick), greedy by descending logit, suppressing IoU strictly above
   ``iou_threshold``; the first ``post_nms_top_k`` survivors are kept, padded to that count.

Everything is under ``tf.stop_gradient``: proposals are constants for the second stage, as in
detectron2. Boxes are ``[x0, y0, x1, y1]`` float32 in model-input pixels (pixel (i, j) covers
``[j, j + 1) x [i, i + 1)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfsp.postprocess.boxes import DECODE_MAX_LOG_SCALE
from tfsp.postprocess.rcnn import BOX_COORDS, RpnProposalConfig

DROPPED_SCORE = float(np.finfo(np.float32).min)
"""Score of dropped candidates; NMS keeps only scores strictly above it (every finite logit)."""


def decode_deltas_tf(deltas: tf.Tensor, anchors_xyxy: tf.Tensor, variances: Sequence[float]) -> tf.Tensor:
    """TF twin of ``decode_cxcywh(deltas, xyxy_to_cxcywh(anchors), variances)`` (same op order).

    Args:
        deltas: (..., 4) float32 ``(dx, dy, dw, dh)``.
        anchors_xyxy: (..., 4) float32 anchors ``[x0, y0, x1, y1]``, broadcastable to ``deltas``.
        variances: ``(v_cx, v_cy, v_w, v_h)``.

    Returns:
        (..., 4) float32 boxes ``[x0, y0, x1, y1]`` in the units of the anchors.
    """
    x0, y0, x1, y1 = tf.unstack(tf.cast(anchors_xyxy, tf.float32), num=BOX_COORDS, axis=-1)
    acx, acy, aw, ah = (x0 + x1) * 0.5, (y0 + y1) * 0.5, x1 - x0, y1 - y0
    dx, dy, dw, dh = tf.unstack(tf.cast(deltas, tf.float32), num=BOX_COORDS, axis=-1)
    cx = dx * variances[0] * aw + acx
    cy = dy * variances[1] * ah + acy
    w = tf.exp(tf.minimum(dw * variances[2], DECODE_MAX_LOG_SCALE)) * aw
    h = tf.exp(tf.minimum(dh * variances[3], DECODE_MAX_LOG_SCALE)) * ah
    half_w, half_h = w * 0.5, h * 0.5
    return tf.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def _level_candidates(logits: tf.Tensor, deltas: tf.Tensor, anchors: np.ndarray, config: RpnProposalConfig,
                      image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k, decode, clip and filter of one level: (B, k, 4) boxes and (B, k) scores (-inf dropped)."""
    batch = tf.shape(logits)[0]
    logits = tf.reshape(tf.cast(logits, tf.float32), [batch, -1])
    deltas = tf.reshape(tf.cast(deltas, tf.float32), [batch, -1, BOX_COORDS])
    count = min(config.pre_nms_top_k, int(anchors.shape[0]))
    scores, top = tf.math.top_k(logits, k=count, sorted=True)
    boxes = decode_deltas_tf(tf.gather(deltas, top, batch_dims=1), tf.gather(tf.constant(anchors), top),
                             config.variances)
    finite = tf.math.is_finite(scores) & tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
    boxes = tf.clip_by_value(tf.where(finite[..., None], boxes, 0.0), 0.0, float(image_size))
    min_size = np.float32(config.min_size_px)
    large = ((boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1] > min_size))
    return boxes, tf.where(finite & large, scores, DROPPED_SCORE)


def proposals_tf(
    objectness: Sequence[tf.Tensor],
    deltas: Sequence[tf.Tensor],
    anchors_xyxy: Sequence[np.ndarray],
    config: RpnProposalConfig,
    image_size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Batched RPN proposals with fixed shapes (steps in the module docstring).

    Args:
        objectness: per level, (B, H_l, W_l, A) (or (B, H_l * W_l * A)) float32 logits.
        deltas: per level, (B, H_l, W_l, 4A) (or (B, H_l * W_l * A, 4)) float32 ``(dx, dy, dw, dh)``.
        anchors_xyxy: per level, (H_l * W_l * A, 4) float32 anchors, input px
            (``generate_fpn_anchors``), in the order of the reshaped outputs.
        config: selection thresholds (``pre_nms_top_k`` per level, ``post_nms_top_k`` per image).
        image_size: S, the square input side in pixels (clipping bound).

    Returns:
        boxes (B, P, 4) float32 ``[x0, y0, x1, y1]`` input px, by descending logit, zeros on
        padding rows; valid (B, P) bool, True on the first proposals of each image;
        ``P = config.post_nms_top_k``. No gradient flows through either.
    """
    if not len(objectness) == len(deltas) == len(anchors_xyxy):
        raise ValueError(f"objectness, deltas, anchors_xyxy need one entry per level, got "
                         f"{len(objectness)}, {len(deltas)}, {len(anchors_xyxy)}")
    boxes, scores, shifted = [], [], []
    for index, (logits, level_deltas, anchors) in enumerate(zip(objectness, deltas, anchors_xyxy)):
        level_boxes, level_scores = _level_candidates(tf.stop_gradient(logits), tf.stop_gradient(level_deltas),
                                                      np.asarray(anchors, np.float32), config, image_size)
        boxes.append(level_boxes)
        scores.append(level_scores)
        shifted.append(level_boxes + float(index * (image_size + 1)))
    boxes, scores, shifted = (tf.concat(parts, axis=1) for parts in (boxes, scores, shifted))
    post = config.post_nms_top_k

    def select(args: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image_boxes, image_scores = args
        keep, count = tf.image.non_max_suppression_padded(image_boxes, image_scores, post,
                                                          iou_threshold=config.iou_threshold,
                                                          score_threshold=DROPPED_SCORE, pad_to_max_output_size=True)
        return keep, count

    keep, count = tf.map_fn(select, (shifted, scores), fn_output_signature=(tf.int32, tf.int32))
    valid = tf.range(post)[None, :] < count[:, None]
    picked = tf.gather(boxes, keep, batch_dims=1)
    return tf.stop_gradient(tf.where(valid[..., None], picked, 0.0)), valid
