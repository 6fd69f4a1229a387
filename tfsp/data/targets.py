"""Training targets computed inside ``tf.data`` (TensorFlow).

SSD default-box matching (Liu et al., 2016), applied per example by
:func:`tfsp.data.pipeline.make_dataset` through ``target_fn``:

1. IoU between every anchor and every valid ground-truth box (padded rows, ``class_ids == -1``,
   and zero-area boxes never match). Crowd boxes take part in matching.
2. An anchor whose best IoU is ``>= iou_threshold`` matches that box (ties: lowest box index).
3. Valid non-crowd boxes also get one anchor each by greedy bipartite matching (the SSD Caffe
   reference): repeatedly the remaining (anchor, box) pair with the highest IoU > 0 is paired and
   both are removed. These forced matches override step 2, so every box that overlaps any
   anchor has a positive anchor even below the threshold or when boxes compete for one anchor.
4. Anchors matched (in step 2, not forced) to a crowd box are ignored (class -1); other matched
   anchors are positive (class ``k + 1`` for ``class_id`` k), all the rest background (0).

Box targets of positive anchors are ``tfsp.postprocess.boxes.encode_cxcywh`` of the matched box
(normalised by the input image size) relative to the anchor; other anchors get zeros.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfsp.postprocess.boxes import BOX_VARIANCES, cxcywh_to_xyxy
from tfsp.postprocess.ssd import BOX_DELTAS, CLASS_LOGITS

DEFAULT_IOU_THRESHOLD = 0.5
BACKGROUND_CLASS = 0
IGNORE_CLASS = -1
PAD_CLASS_ID = -1

Example = dict[str, tf.Tensor]


def argmax_first(values: tf.Tensor, axis: int) -> tf.Tensor:
    """Index of the maximum along ``axis`` (0 or 1) of a 2-D tensor; ties resolve to the lowest index (int32)."""
    size = tf.shape(values)[axis]
    shape = [1, 1]
    shape[axis] = -1
    index = tf.reshape(tf.range(size), shape)
    is_max = tf.equal(values, tf.reduce_max(values, axis=axis, keepdims=True))
    return tf.reduce_min(tf.where(is_max, index, size), axis=axis)


def _area(boxes_xyxy: tf.Tensor) -> tf.Tensor:
    width = tf.maximum(boxes_xyxy[..., 2] - boxes_xyxy[..., 0], 0.0)
    height = tf.maximum(boxes_xyxy[..., 3] - boxes_xyxy[..., 1], 0.0)
    return width * height


def iou_matrix_xyxy(boxes_a_xyxy: tf.Tensor, boxes_b_xyxy: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU with the float32 operation order of ``tfsp.postprocess.boxes.iou_xyxy``.

    Args:
        boxes_a_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]``.
        boxes_b_xyxy: (M, 4) float32, same units.

    Returns:
        (N, M) float32 IoU; 0 where either box has zero area.
    """
    area_a = _area(boxes_a_xyxy)[:, None]
    area_b = _area(boxes_b_xyxy)[None, :]
    inter_w = tf.minimum(boxes_a_xyxy[:, None, 2], boxes_b_xyxy[None, :, 2]) - tf.maximum(
        boxes_a_xyxy[:, None, 0], boxes_b_xyxy[None, :, 0]
    )
    inter_h = tf.minimum(boxes_a_xyxy[:, None, 3], boxes_b_xyxy[None, :, 3]) - tf.maximum(
        boxes_a_xyxy[:, None, 1], boxes_b_xyxy[None, :, 1]
    )
    intersection = tf.maximum(inter_w, 0.0) * tf.maximum(inter_h, 0.0)
    union = area_a + area_b - intersection
    valid = (area_a > 0.0) & (area_b > 0.0)
    return tf.where(valid, intersection / tf.where(valid, union, 1.0), 0.0)


def encode_cxcywh_tf(
    boxes_xyxy: tf.Tensor, anchors_cxcywh: tf.Tensor, variances: tuple[float, ...]
) -> tf.Tensor:
    """TensorFlow twin of ``tfsp.postprocess.boxes.encode_cxcywh`` (same float32 op order).

    Args:
        boxes_xyxy: (..., 4) float32 ``[x0, y0, x1, y1]``.
        anchors_cxcywh: (..., 4) float32 ``[cx, cy, w, h]``, same units.
        variances: (v0, v1, v2, v3).

    Returns:
        (..., 4) float32 deltas.
    """
    cx = (boxes_xyxy[..., 0] + boxes_xyxy[..., 2]) * 0.5
    cy = (boxes_xyxy[..., 1] + boxes_xyxy[..., 3]) * 0.5
    w = boxes_xyxy[..., 2] - boxes_xyxy[..., 0]
    h = boxes_xyxy[..., 3] - boxes_xyxy[..., 1]
    acx, acy, aw, ah = (anchors_cxcywh[..., k] for k in range(4))
    return tf.stack(
        [
            (cx - acx) / aw / variances[0],
            (cy - acy) / ah / variances[1],
            tf.math.log(w / aw) / variances[2],
            tf.math.log(h / ah) / variances[3],
        ],
        axis=-1,
    )


def _bipartite_match(iou: tf.Tensor) -> tf.Tensor:
    """Greedy bipartite matching: repeatedly pair the (anchor, box) with the highest IoU > 0.

    Args:
        iou: (A, M) float32, -1 for boxes that must not be matched.

    Returns:
        (A,) int32 box index forced onto each anchor, -1 where none. Each box gets at most one
        anchor and vice versa; ties go to the lowest flat (anchor-major) index.

    The greedy rounds run on each box's ``min(M, A)`` best anchors only (``top_k``, ties to the
    lowest anchor): before a box is paired at most M - 1 anchors are taken, so its best free
    anchor is always among them and the pairs equal those of the greedy over the full (A, M)
    matrix, at a fraction of the work per round.
    """
    num_anchors, num_boxes = tf.shape(iou)[0], tf.shape(iou)[1]
    num_rounds = tf.reduce_sum(tf.cast(tf.reduce_max(iou, axis=0) > 0.0, tf.int32))
    candidates, candidate_anchors = tf.math.top_k(tf.transpose(iou), tf.minimum(num_boxes, num_anchors))
    box_ids = tf.range(num_boxes)
    flat_keys = candidate_anchors * num_boxes + box_ids[:, None]  # the anchor-major flat index of each pair
    no_key = num_anchors * num_boxes

    def body(i, remaining, anchor_of_box):
        best = tf.reduce_max(remaining)
        key = tf.reduce_min(tf.where(tf.equal(remaining, best), flat_keys, no_key))
        anchor, box = key // num_boxes, key % num_boxes
        take = best > 0.0
        anchor_of_box = tf.where(take & tf.equal(box_ids, box), anchor, anchor_of_box)
        taken = tf.equal(candidate_anchors, anchor) | tf.equal(box_ids, box)[:, None]
        remaining = tf.where(take & taken, -1.0, remaining)
        return i + 1, remaining, anchor_of_box

    _, _, anchor_of_box = tf.while_loop(
        lambda i, *_: i < num_rounds,
        body,
        (tf.constant(0), candidates, tf.fill([num_boxes], -1)),
    )
    paired = anchor_of_box >= 0
    return tf.tensor_scatter_nd_update(
        tf.fill([num_anchors], -1), tf.boolean_mask(anchor_of_box, paired)[:, None], tf.boolean_mask(box_ids, paired)
    )


def match_ssd_anchors(
    anchors_xyxy: tf.Tensor,
    gt_boxes_xyxy: tf.Tensor,
    valid: tf.Tensor,
    is_crowd: tf.Tensor,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """SSD matching (see the module docstring).

    Args:
        anchors_xyxy: (A, 4) float32 normalised anchors.
        gt_boxes_xyxy: (M, 4) float32 normalised ground-truth boxes, M >= 1.
        valid: (M,) bool, False for padded rows.
        is_crowd: (M,) bool.
        iou_threshold: IoU at or above which an anchor matches.

    Returns:
        matched_gt (A,) int32 box index per anchor, positive (A,) bool, ignored (A,) bool.
    """
    iou = tf.where(valid[None, :], iou_matrix_xyxy(anchors_xyxy, gt_boxes_xyxy), -1.0)
    best_gt = argmax_first(iou, axis=1)
    best_iou = tf.reduce_max(iou, axis=1)
    matched = best_iou >= iou_threshold

    forced_gt = _bipartite_match(tf.where((valid & ~is_crowd)[None, :], iou, -1.0))
    forced = forced_gt >= 0
    matched_gt = tf.where(forced, forced_gt, best_gt)
    crowd_matched = matched & tf.gather(is_crowd, best_gt) & ~forced
    positive = (matched | forced) & ~crowd_matched
    return matched_gt, positive, crowd_matched


def make_ssd_target_fn(
    anchors_cxcywh: np.ndarray,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    variances: tuple[float, float, float, float] = BOX_VARIANCES,
) -> Callable[[Example], Example]:
    """Returns a per-example ``target_fn`` adding SSD ``box_targets`` and ``class_targets``.

    Args:
        anchors_cxcywh: (A, 4) float32 ``[cx, cy, w, h]`` normalised to [0, 1] (the order of
            ``tfsp.postprocess.anchors.generate_ssd_anchors`` and of the model outputs).
        iou_threshold: match threshold.
        variances: box-coding variances, as in ``tfsp.postprocess.boxes.encode_cxcywh``.

    Returns:
        ``fn(example) -> example``. Reads ``image`` (S_h, S_w, 3) (for the input size),
        ``boxes_xyxy`` (M, 4) float32 input pixels, ``class_ids`` (M,) int32 (-1 padding) and
        optional ``is_crowd`` (M,) bool; returns a new dict that adds ``box_targets`` (A, 4)
        float32 deltas and ``class_targets`` (A,) int32 (0 background, k+1 class k, -1 ignore).
    """
    anchors_np = np.asarray(anchors_cxcywh, dtype=np.float32)
    anchors = tf.constant(anchors_np)
    anchors_xyxy = tf.constant(cxcywh_to_xyxy(anchors_np).astype(np.float32))
    variances = tuple(float(v) for v in variances)

    def target_fn(example: Example) -> Example:
        image_shape = tf.shape(example["image"])
        height = tf.cast(image_shape[0], tf.float32)
        width = tf.cast(image_shape[1], tf.float32)
        scale = tf.stack([width, height, width, height])
        boxes = tf.cast(example["boxes_xyxy"], tf.float32) / scale
        class_ids = tf.cast(example["class_ids"], tf.int32)
        is_crowd = tf.cast(example.get("is_crowd", tf.zeros_like(class_ids, tf.bool)), tf.bool)
        # Drop padded rows (matching cost grows with their number), then append one padded row
        # so that M >= 1 and the reductions below are defined for empty images.
        keep = class_ids != PAD_CLASS_ID
        boxes = tf.concat([tf.boolean_mask(boxes, keep), tf.zeros([1, 4], tf.float32)], axis=0)
        class_ids = tf.concat([tf.boolean_mask(class_ids, keep), [PAD_CLASS_ID]], axis=0)
        is_crowd = tf.concat([tf.boolean_mask(is_crowd, keep), [False]], axis=0)

        matched_gt, positive, ignored = match_ssd_anchors(
            anchors_xyxy, boxes, class_ids != PAD_CLASS_ID, is_crowd, iou_threshold
        )
        deltas = encode_cxcywh_tf(tf.gather(boxes, matched_gt), anchors, variances)
        class_targets = tf.where(positive, tf.gather(class_ids, matched_gt) + 1, BACKGROUND_CLASS)
        class_targets = tf.where(ignored, IGNORE_CLASS, class_targets)
        out = dict(example)
        out["box_targets"] = tf.where(positive[:, None], deltas, 0.0)
        out["class_targets"] = tf.cast(class_targets, tf.int32)
        return out

    return target_fn


def ssd_fit_targets(example: Example) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Maps an example (or a batch) with SSD targets to Keras ``fit``'s ``(x, y)``.

    Args:
        example: dict with ``image`` (..., S, S, 3) float32, ``box_targets`` (..., A, 4) float32
            and ``class_targets`` (..., A) int32, as added by :func:`make_ssd_target_fn`.

    Returns:
        ``(image, {"box_deltas": (..., A, 5) float32 deltas + positive flag,
        "class_logits": (..., A) int32 class targets})``, matching the model's output names and
        the losses in :mod:`tfsp.losses`.
    """
    class_targets = example["class_targets"]
    positive = tf.cast(class_targets > BACKGROUND_CLASS, tf.float32)[..., None]
    box_targets = tf.concat([example["box_targets"], positive], axis=-1)
    return example["image"], {BOX_DELTAS: box_targets, CLASS_LOGITS: class_targets}
