"""Box operations on numpy arrays: IoU, formats, SSD box coding and NMS.

Pure functions (inputs are never modified), vectorised over a trailing axis of 4. The order is
in every name: ``xyxy`` = ``[x0, y0, x1, y1]`` in continuous coordinates (pixel (row i, column j)
covers ``[j, j + 1) x [i, i + 1)``, centre ``(j + 0.5, i + 0.5)``); ``cxcywh`` = ``[cx, cy, w, h]``.
Units are the caller's (pixels or normalised ``[0, 1]``); paired inputs must share them.

``nms`` / ``batched_nms`` return exactly the indices of ``tf.image.non_max_suppression`` (which
takes ``[y0, x0, y1, x1]``: pass ``boxes_xyxy[:, [1, 0, 3, 2]]``). Like the TensorFlow CPU kernel
(``core/kernels/image/non_max_suppression_op.cc``):

* boxes, scores and both thresholds are float32;
* candidates have ``score > score_threshold`` (strict), visited by descending score, equal scores
  by ascending index;
* a candidate is suppressed when ``IoU > iou_threshold`` (strict) with a selected box, so
  ``iou_threshold=1`` suppresses nothing; ``iou_threshold`` outside ``[0, 1]`` is an error;
* corners may come in either order (sorted per box first); a zero-area box has IoU 0 with every
  box, so it never suppresses and is never suppressed.

There is no wall-clock limit: the result depends on the input only.
"""

from __future__ import annotations

import math

import numpy as np

Variances = tuple[float, float, float, float]
"""Box-coding scale divisors (v_cx, v_cy, v_w, v_h)."""

BOX_VARIANCES: Variances = (0.1, 0.1, 0.2, 0.2)
"""SSD centre-size coding variances for (cx, cy, w, h) (Liu et al. 2016)."""

DECODE_MAX_LOG_SCALE: float = math.log(1000.0 / 16.0)
"""Cap on ``log(w / anchor_w)`` in ``decode_cxcywh``: guards ``exp`` against overflow on garbage
deltas (detectron2's and torchvision's bound); boxes up to 62.5x the anchor are unaffected."""

NO_SCORE_THRESHOLD: float = float("-inf")
"""Default NMS score threshold: keep every finite score (as TensorFlow does)."""


def _as_float(values: np.ndarray) -> np.ndarray:
    """Returns ``values`` as a float array (float64 kept, others -> float32)."""
    array = np.asarray(values)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)


def _check_last_dim(boxes: np.ndarray, name: str) -> None:
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [..., 4], got {boxes.shape}")


def box_list_xyxy(boxes_xyxy: np.ndarray) -> np.ndarray:
    """``boxes_xyxy`` as an (N, 4) float32 array (an empty input becomes (0, 4)).

    Raises:
        ValueError: not (N, 4).
    """
    boxes = np.asarray(boxes_xyxy, np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape (N, 4), got {boxes.shape}")
    return boxes


def area_xyxy(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Area of boxes; boxes with ``x1 < x0`` or ``y1 < y0`` have area 0.

    Args:
        boxes_xyxy: ``[..., 4]`` float ``[x0, y0, x1, y1]``, any units.

    Returns:
        ``[...]`` float (float64 stays float64, else float32), units squared.
    """
    boxes = _as_float(boxes_xyxy)
    _check_last_dim(boxes, "boxes_xyxy")
    width = np.maximum(boxes[..., 2] - boxes[..., 0], 0)
    height = np.maximum(boxes[..., 3] - boxes[..., 1], 0)
    return width * height


def iou_xyxy(boxes_a_xyxy: np.ndarray, boxes_b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, computed in float32 like TensorFlow.

    A pair where either box has zero area (inverted boxes included) has IoU 0.

    Args:
        boxes_a_xyxy: ``(N, 4)`` float ``[x0, y0, x1, y1]``.
        boxes_b_xyxy: ``(M, 4)`` float, same units as ``boxes_a_xyxy``.

    Returns:
        ``(N, M)`` float32 IoU in ``[0, 1]``.
    """
    boxes_a = np.asarray(boxes_a_xyxy, dtype=np.float32)
    boxes_b = np.asarray(boxes_b_xyxy, dtype=np.float32)
    if boxes_a.ndim != 2 or boxes_b.ndim != 2 or boxes_a.shape[1] != 4 or boxes_b.shape[1] != 4:
        raise ValueError(f"boxes_a_xyxy, boxes_b_xyxy must be (N, 4), (M, 4): {boxes_a.shape}, "
                         f"{boxes_b.shape}")
    area_a = area_xyxy(boxes_a)[:, None]
    area_b = area_xyxy(boxes_b)[None, :]
    lower = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    upper = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter_w, inter_h = upper[..., 0] - lower[..., 0], upper[..., 1] - lower[..., 1]
    intersection = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
    # Same float32 operation order as TensorFlow: (area_a + area_b) - inter.
    union = area_a + area_b - intersection
    valid = (area_a > 0) & (area_b > 0)
    iou = np.zeros(intersection.shape, dtype=np.float32)
    np.divide(intersection, union, out=iou, where=valid)
    return iou


def xyxy_to_cxcywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Converts ``[x0, y0, x1, y1]`` to ``[cx, cy, w, h]``.

    Args:
        boxes_xyxy: ``[..., 4]`` float, any units.

    Returns:
        ``[..., 4]`` float ``[cx, cy, w, h]`` in the same units.
    """
    boxes = _as_float(boxes_xyxy)
    _check_last_dim(boxes, "boxes_xyxy")
    x0, y0, x1, y1 = (boxes[..., k] for k in range(4))
    return np.stack([(x0 + x1) * 0.5, (y0 + y1) * 0.5, x1 - x0, y1 - y0], axis=-1)


def cxcywh_to_xyxy(boxes_cxcywh: np.ndarray) -> np.ndarray:
    """Converts ``[cx, cy, w, h]`` to ``[x0, y0, x1, y1]``.

    Args:
        boxes_cxcywh: ``[..., 4]`` float, any units.

    Returns:
        ``[..., 4]`` float ``[x0, y0, x1, y1]`` in the same units.
    """
    boxes = _as_float(boxes_cxcywh)
    _check_last_dim(boxes, "boxes_cxcywh")
    cx, cy, w, h = (boxes[..., k] for k in range(4))
    half_w, half_h = w * 0.5, h * 0.5
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def clip_xyxy(boxes_xyxy: np.ndarray, height: float, width: float) -> np.ndarray:
    """Clips boxes to ``[0, width] x [0, height]`` (continuous: the last column ends at ``width``).

    Args:
        boxes_xyxy: ``[..., 4]`` float ``[x0, y0, x1, y1]``.
        height: image height in the units of the boxes (1.0 if normalised).
        width: image width in the units of the boxes.

    Returns:
        ``[..., 4]`` float clipped boxes, same dtype.
    """
    boxes = _as_float(boxes_xyxy)
    _check_last_dim(boxes, "boxes_xyxy")
    upper = np.asarray([width, height, width, height], dtype=boxes.dtype)
    return np.minimum(np.maximum(boxes, 0), upper)


def _check_variances(variances: Variances) -> None:
    if len(variances) != 4 or min(variances) <= 0:
        raise ValueError(f"variances must be 4 positive numbers, got {variances}")


def encode_cxcywh(
    boxes_xyxy: np.ndarray, anchors_cxcywh: np.ndarray, variances: Variances = BOX_VARIANCES
) -> np.ndarray:
    """SSD centre-size encoding of boxes relative to anchors.

    ``deltas = ((cx - acx) / aw / v0, (cy - acy) / ah / v1, log(w / aw) / v2, log(h / ah) / v3)``.
    No epsilon is added: boxes need positive width and height (a zero size encodes to ``-inf``).

    Args:
        boxes_xyxy: ``[..., 4]`` float ``[x0, y0, x1, y1]``.
        anchors_cxcywh: ``[..., 4]`` float ``[cx, cy, w, h]`` broadcastable to
            ``boxes_xyxy``, same units (normalised ``[0, 1]`` for SSD).
        variances: (v0, v1, v2, v3) positive scale divisors.

    Returns:
        ``[..., 4]`` float deltas (float32 unless an input is float64).
    """
    _check_variances(variances)
    boxes = xyxy_to_cxcywh(boxes_xyxy)
    anchors = _as_float(anchors_cxcywh)
    _check_last_dim(anchors, "anchors_cxcywh")
    cx, cy, w, h = (boxes[..., k] for k in range(4))
    acx, acy, aw, ah = (anchors[..., k] for k in range(4))
    return np.stack([(cx - acx) / aw / variances[0], (cy - acy) / ah / variances[1],
                     np.log(w / aw) / variances[2], np.log(h / ah) / variances[3]], axis=-1)


def decode_cxcywh(
    deltas: np.ndarray, anchors_cxcywh: np.ndarray, variances: Variances = BOX_VARIANCES
) -> np.ndarray:
    """Inverse of ``encode_cxcywh``: deltas and anchors to ``xyxy`` boxes.

    ``delta * v`` of w and h is capped at ``DECODE_MAX_LOG_SCALE`` before ``exp``; below the cap
    this is the exact inverse of the encoding.

    Args:
        deltas: ``[..., 4]`` float encoded offsets.
        anchors_cxcywh: ``[..., 4]`` float ``[cx, cy, w, h]`` broadcastable to ``deltas``.
        variances: the (v0, v1, v2, v3) used for encoding.

    Returns:
        ``[..., 4]`` float ``[x0, y0, x1, y1]`` in the units of the anchors.
    """
    _check_variances(variances)
    deltas = _as_float(deltas)
    anchors = _as_float(anchors_cxcywh)
    _check_last_dim(deltas, "deltas")
    _check_last_dim(anchors, "anchors_cxcywh")
    cx = deltas[..., 0] * variances[0] * anchors[..., 2] + anchors[..., 0]
    cy = deltas[..., 1] * variances[1] * anchors[..., 3] + anchors[..., 1]
    w = np.exp(np.minimum(deltas[..., 2] * variances[2], DECODE_MAX_LOG_SCALE)) * anchors[..., 2]
    h = np.exp(np.minimum(deltas[..., 3] * variances[3], DECODE_MAX_LOG_SCALE)) * anchors[..., 3]
    return cxcywh_to_xyxy(np.stack([cx, cy, w, h], axis=-1))


def _nms_inputs(boxes_xyxy, scores, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Validates NMS inputs; returns float32 boxes with sorted corners, scores."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape (N, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    lower = np.minimum(boxes[:, :2], boxes[:, 2:])
    upper = np.maximum(boxes[:, :2], boxes[:, 2:])
    return np.concatenate([lower, upper], axis=1), scores


def _greedy_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, iou_threshold: float,
    score_threshold: float, max_detections: int | None,
) -> np.ndarray:
    """Greedy NMS over canonical float32 boxes; optional per-class grouping."""
    if max_detections is not None and max_detections < 0:
        raise ValueError(f"max_detections must be >= 0 or None, got {max_detections}")
    limit = boxes.shape[0] if max_detections is None else max_detections
    candidates = np.flatnonzero(scores > np.float32(score_threshold))
    # Stable sort of negated scores: descending score, ties by ascending index.
    remaining = candidates[np.argsort(-scores[candidates], kind="stable")]
    threshold = np.float32(iou_threshold)
    keep: list[int] = []
    while remaining.size > 0 and len(keep) < limit:
        best, rest = remaining[0], remaining[1:]
        keep.append(int(best))
        suppressed = iou_xyxy(boxes[best : best + 1], boxes[rest])[0] > threshold
        if class_ids is not None:
            suppressed &= class_ids[rest] == class_ids[best]
        remaining = rest[~suppressed]
    return np.asarray(keep, dtype=np.int64)


def nms(
    boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float,
    score_threshold: float = NO_SCORE_THRESHOLD, max_detections: int | None = None,
) -> np.ndarray:
    """Greedy class-agnostic NMS, index-identical to TensorFlow's (semantics: module docstring).

    Args:
        boxes_xyxy: ``(N, 4)`` float ``[x0, y0, x1, y1]`` (corners in any order).
        scores: ``(N,)`` float scores (compared in float32).
        iou_threshold: suppress when IoU is strictly greater, in ``[0, 1]``.
        score_threshold: keep only boxes with a strictly greater score.
        max_detections: at most this many indices; None for no limit.

    Returns:
        ``(K,)`` int64 indices into ``boxes_xyxy``, by descending score.
    """
    boxes, scores = _nms_inputs(boxes_xyxy, scores, iou_threshold)
    return _greedy_nms(boxes, scores, None, iou_threshold, score_threshold, max_detections)


def batched_nms(
    boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
    score_threshold: float = NO_SCORE_THRESHOLD, max_detections: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Equal to ``nms`` (so ``tf.image.non_max_suppression``) per class, kept indices merged by
    descending score (ties by ascending index), then the first ``max_detections``.

    Args:
        boxes_xyxy: ``(N, 4)`` float ``[x0, y0, x1, y1]`` (corners in any order).
        scores: ``(N,)`` float scores (compared in float32).
        class_ids: ``(N,)`` integer class of each box.
        iou_threshold: suppress when IoU is strictly greater, in ``[0, 1]``.
        score_threshold: keep only boxes with a strictly greater score.
        max_detections: at most this many indices in total; None for no limit.

    Returns:
        ``(K,)`` int64 indices into ``boxes_xyxy``, by descending score.
    """
    boxes, scores = _nms_inputs(boxes_xyxy, scores, iou_threshold)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != scores.shape or not np.issubdtype(class_ids.dtype, np.integer):
        raise ValueError(f"class_ids must be integers of shape {scores.shape}, got "
                         f"{class_ids.dtype} {class_ids.shape}")
    return _greedy_nms(boxes, scores, class_ids, iou_threshold, score_threshold, max_detections)
