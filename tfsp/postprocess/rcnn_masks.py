"""Mask R-CNN numpy steps after stage 3: mask paste-back and keypoint decoding (numpy only).

Stage 3 (mask and keypoint heads, run on RoIAlign of the final detection boxes) ends at soft
``M x M`` masks and ``S x S`` keypoint heatmaps *in box coordinates*; this module maps them back to
the image and builds ``InstanceMasks`` and ``Poses`` alongside the stage-2 ``Detections``.

Box coordinates: a grid of ``G_h x G_w`` cells laid over the box ``[x0, y0, x1, y1]``
(``w = x1 - x0``, ``h = y1 - y0``) gives cell (row u, col v) the sub-rectangle
``[x0 + v * w / G_w, x0 + (v + 1) * w / G_w) x [y0 + u * h / G_h, y0 + (u + 1) * h / G_h)`` and the
centre ``(x0 + (v + 0.5) * w / G_w, y0 + (u + 0.5) * h / G_h)``; image pixel (row i, col j) covers
``[j, j + 1) x [i, i + 1)`` with centre ``(j + 0.5, i + 0.5)`` (the package convention).
"""

from __future__ import annotations

import math

import numpy as np

from tfsp.postprocess.peaks import smooth_maps, subcell_offset
from tfsp.structures import NUM_KEYPOINTS, Detections, InstanceMasks, Poses

MASK_ROIS_INPUT = "mask_rois"
"""Input of the mask head: (R, s, s, F) RoI features."""
KEYPOINT_ROIS_INPUT = "keypoint_rois"
"""Input of the keypoint head: (R, s, s, F) RoI features."""
MASK_LOGITS = "mask_logits"
"""Mask head output: (R, M, M, C) per-class mask logits (class k in channel k)."""
KEYPOINT_LOGITS = "keypoint_logits"
"""Keypoint head output: (R, S, S, K) heatmap logits, channels last."""

DEFAULT_MASK_THRESHOLD = 0.5
"""A pasted pixel is foreground where the interpolated mask probability is >= this (detectron2)."""
KEYPOINT_SMOOTHING_SIGMA = 1.0
"""Sigma, in heatmap cells, of the Gaussian that smooths each keypoint's spatial softmax before its peak is taken
(DARK, Zhang et al. CVPR 2020, smooths before its sub-pixel step too): a lone sharp cell no longer beats a broad
mode. +0.6 to +0.8 keypoint AP on three trained models (README, Mask R-CNN)."""
POSE_SCORE_KEYPOINT_EXPONENT = 0.5
"""Pose score = box score * (mean keypoint peak probability) ** this (``pose_scores``); 0: the box score.

Ranking people by how sure the keypoint head is, not only the box head, raised keypoint AP on the
synthetic val split by 4-5 points on three trained models (README, Mask R-CNN); the square root keeps
the box score the larger factor."""


def _float_array(name: str, values: np.ndarray, ndim: int) -> np.ndarray:
    array = np.asarray(values, np.float32)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


def _check_boxes(boxes_xyxy: np.ndarray, count: int) -> np.ndarray:
    boxes = np.asarray(boxes_xyxy, np.float64)
    if boxes.shape != (count, 4):
        raise ValueError(f"boxes_xyxy must have shape ({count}, 4), got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes_xyxy must be finite")
    return boxes


def _pixel_window(lower: float, upper: float, size: int) -> np.ndarray:
    """Pixels ``p`` in ``[0, size)`` whose centre ``p + 0.5`` lies in ``[lower, upper)``; int64."""
    first = max(math.ceil(lower - 0.5), 0)
    stop = min(math.ceil(upper - 0.5), size)
    return np.arange(first, max(stop, first), dtype=np.int64)


def _linear_taps(pixels: np.ndarray, lower: float, extent: float, cells: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D linear interpolation at pixel centres: (low cell, high cell, weight of high), float64 weight.

    The sample position in cell-index units is ``(p + 0.5 - lower) * cells / extent - 0.5`` (cell k's
    centre is index k), clamped to ``[0, cells - 1]``: beyond the outer cell centres the edge cell
    value is kept (no fade to 0 at the box border).
    """
    position = np.clip((pixels + 0.5 - lower) * (cells / extent) - 0.5, 0.0, cells - 1.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, cells - 1)
    return low, high, position - low


def paste_masks(
    mask_probs: np.ndarray, boxes_xyxy: np.ndarray, image_height: int, image_width: int,
    threshold: float = DEFAULT_MASK_THRESHOLD,
) -> np.ndarray:
    """Resamples each box-relative soft mask into its box on the image and thresholds it.

    Image pixel (i, j) whose centre ``(j + 0.5, i + 0.5)`` lies in the half-open box
    ``[x0, x1) x [y0, y1)`` takes the bilinear interpolation of the mask at its centre (mask cell
    centres as in the module docstring; clamped to the edge cells within half a cell of the box
    border, so an all-one mask fills its box exactly); pixels outside the box are False. Work is
    vectorised over each box's pixel window only.

    Args:
        mask_probs: ``(N, M_h, M_w)`` float probabilities in ``[0, 1]``, each detection's mask of
            its own class (e.g. ``sigmoid`` of the mask head's logits, M = 28).
        boxes_xyxy: ``(N, 4)`` float ``[x0, y0, x1, y1]`` image pixels (finite; empty or inverted
            boxes give empty masks).
        image_height: output height H in pixels.
        image_width: output width W in pixels.
        threshold: foreground where the interpolated probability is ``>= threshold``.

    Returns:
        ``(N, H, W)`` bool masks.
    """
    masks = _float_array("mask_probs", mask_probs, 3)
    boxes = _check_boxes(boxes_xyxy, masks.shape[0])
    if image_height < 0 or image_width < 0 or min(masks.shape[1:]) < 1:
        raise ValueError(f"need image size >= 0 and masks of at least 1 x 1 cells, got {image_height} x "
                         f"{image_width}, mask_probs {masks.shape}")
    _, cells_h, cells_w = masks.shape
    pasted = np.zeros((masks.shape[0], image_height, image_width), bool)
    for index, (mask, (x0, y0, x1, y1)) in enumerate(zip(masks, boxes)):
        cols, rows = _pixel_window(x0, x1, image_width), _pixel_window(y0, y1, image_height)
        if cols.size == 0 or rows.size == 0:
            continue
        left, right, ax = _linear_taps(cols, x0, x1 - x0, cells_w)
        top, bottom, ay = _linear_taps(rows, y0, y1 - y0, cells_h)
        upper = mask[top][:, left] * (1.0 - ax) + mask[top][:, right] * ax  # (rows, cols) float64
        lower = mask[bottom][:, left] * (1.0 - ax) + mask[bottom][:, right] * ax
        values = upper * (1.0 - ay)[:, None] + lower * ay[:, None]
        pasted[index, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = values >= threshold
    return pasted


def decode_keypoint_heatmaps(heatmaps: np.ndarray, boxes_xyxy: np.ndarray,
                             smoothing_sigma: float = KEYPOINT_SMOOTHING_SIGMA) -> np.ndarray:
    """Box-relative keypoint heatmap logits to image-pixel keypoints.

    Per (detection, keypoint): the spatial softmax of the ``S_h x S_w`` logits is smoothed by a
    Gaussian of ``smoothing_sigma`` cells (``tfsp.postprocess.peaks.smooth_maps``; 0: not
    smoothed); the peak is its argmax (ties: first in raster order); a parabola through the logs
    of the peak and its two neighbours along x, and along y (``tfsp.postprocess.peaks.subcell_offset``)
    moves it by at most half a cell, not on the map border; the refined cell position
    ``(v + 0.5 + dx, u + 0.5 + dy)`` maps to ``x0 + (v + 0.5 + dx) * w / S_w`` and
    ``y0 + (u + 0.5 + dy) * h / S_h``.

    Args:
        heatmaps: ``(N, K, S_h, S_w)`` float logits (channels first: transpose an NHWC head
            output ``(N, S, S, K)`` with ``(0, 3, 1, 2)``), S = 56 in Mask R-CNN.
        boxes_xyxy: ``(N, 4)`` float ``[x0, y0, x1, y1]`` image pixels of the detections.
        smoothing_sigma: Gaussian sigma in heatmap cells, >= 0.

    Returns:
        ``(N, K, 3)`` float32 ``[x, y, score]``: x, y image pixels; score the largest spatial
        softmax probability of the (unsmoothed) map, in ``(0, 1]``.
    """
    logits = _float_array("heatmaps", heatmaps, 4)
    count, num_keypoints, cells_h, cells_w = logits.shape
    boxes = _check_boxes(boxes_xyxy, count)
    if cells_h < 1 or cells_w < 1:
        raise ValueError(f"heatmaps must have at least 1 x 1 cells, got {logits.shape}")
    if not smoothing_sigma >= 0:
        raise ValueError(f"smoothing_sigma must be >= 0, got {smoothing_sigma}")
    flat = logits.reshape(count, num_keypoints, cells_h * cells_w)
    # exp(logit - peak logit): the softmax times its sum, which neither the argmax nor the
    # log-parabola (nor the linear smoothing before them) depends on; float32
    relative = np.exp(flat - np.max(flat, axis=2, keepdims=True))
    score = 1.0 / np.sum(relative, axis=2, dtype=np.float64)  # the peak's probability
    maps = relative.reshape(count * num_keypoints, cells_h, cells_w)
    if smoothing_sigma > 0:
        maps = smooth_maps(maps, smoothing_sigma)  # in float32: several times faster than float64
    maps = maps.reshape(count, num_keypoints, cells_h, cells_w)
    peak_index = np.argmax(maps.reshape(count, num_keypoints, cells_h * cells_w), axis=2)  # (N, K)
    rows, cols = np.divmod(peak_index, cells_w)
    n, k = np.indices(peak_index.shape)

    def value(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return maps[n, k, np.clip(r, 0, cells_h - 1), np.clip(c, 0, cells_w - 1)]

    centre = value(rows, cols)
    dx = subcell_offset(value(rows, cols - 1), centre, value(rows, cols + 1), (cols > 0) & (cols < cells_w - 1))
    dy = subcell_offset(value(rows - 1, cols), centre, value(rows + 1, cols), (rows > 0) & (rows < cells_h - 1))
    x0, y0, x1, y1 = (boxes[:, None, i] for i in range(4))
    x = x0 + (cols + 0.5 + dx) * (x1 - x0) / cells_w
    y = y0 + (rows + 0.5 + dy) * (y1 - y0) / cells_h
    return np.stack([x, y, score], axis=-1).astype(np.float32)


def pose_scores(box_scores: np.ndarray, keypoint_scores: np.ndarray,
                exponent: float = POSE_SCORE_KEYPOINT_EXPONENT) -> np.ndarray:
    """Score of each person pose from its box score and its keypoints' peak probabilities.

    Args:
        box_scores: ``(N,)`` float box-head scores in [0, 1].
        keypoint_scores: ``(N, K)`` float peak probabilities in [0, 1] (``decode_keypoint_heatmaps``'
            third column).
        exponent: weight of the keypoints, >= 0 (0: the box score alone).

    Returns:
        ``(N,)`` float32 ``box_scores * mean(keypoint_scores, axis=1) ** exponent``.
    """
    boxes = np.asarray(box_scores, np.float64).reshape(-1)
    keypoints = np.asarray(keypoint_scores, np.float64)
    if keypoints.ndim != 2 or keypoints.shape[0] != boxes.shape[0]:
        raise ValueError(f"keypoint_scores must have shape ({boxes.shape[0]}, K), got {keypoints.shape}")
    if exponent < 0:
        raise ValueError(f"exponent must be >= 0, got {exponent}")
    if boxes.size == 0:
        return np.zeros(0, np.float32)
    return (boxes * np.mean(keypoints, axis=1) ** exponent).astype(np.float32)


def instance_masks_from_detections(
    detections: Detections, mask_probs: np.ndarray, image_height: int, image_width: int,
    threshold: float = DEFAULT_MASK_THRESHOLD,
) -> InstanceMasks:
    """``paste_masks`` of the detections' boxes, with the detections' scores and class ids.

    Args:
        detections: N stage-2 detections (boxes in image pixels).
        mask_probs: ``(N, M_h, M_w)`` float probabilities, row n the mask of detection n's class.
        image_height: image height H in pixels.
        image_width: image width W in pixels.
        threshold: foreground where the interpolated probability is ``>= threshold``.

    Returns:
        ``InstanceMasks`` with ``(N, H, W)`` masks, in the detections' order.
    """
    masks = paste_masks(mask_probs, detections.boxes_xyxy, image_height, image_width, threshold)
    return InstanceMasks.create(masks, detections.scores, detections.class_ids)


def poses_from_detections(detections: Detections, heatmaps: np.ndarray) -> Poses:
    """``decode_keypoint_heatmaps`` of the detections' boxes, each pose scored by ``pose_scores``.

    Args:
        detections: N person detections (boxes in image pixels).
        heatmaps: ``(N, 17, S_h, S_w)`` float keypoint logits, COCO keypoint order.

    Returns:
        ``Poses`` with ``(N, 17, 3)`` keypoints, in the detections' order.
    """
    heatmaps = _float_array("heatmaps", heatmaps, 4)
    if heatmaps.shape[1] != NUM_KEYPOINTS:
        raise ValueError(f"heatmaps must have {NUM_KEYPOINTS} keypoint channels, got shape {heatmaps.shape}")
    keypoints = decode_keypoint_heatmaps(heatmaps, detections.boxes_xyxy)
    return Poses.create(keypoints, pose_scores(detections.scores, keypoints[..., 2]))
