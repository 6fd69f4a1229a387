"""Heatmap helpers shared by the PAF parser and Mask R-CNN keypoint decoding (numpy only).

* :func:`smooth_maps`: separable Gaussian smoothing of (K, H, W) maps.
* :func:`subcell_offset`: sub-cell peak refinement by a parabola through log scores.
* :func:`fill_missing_keypoints`: gives each person's missing keypoints the best heatmap cell
  near that person, so that every person reports 17 keypoints (COCO's OKS scores a missing
  prediction as a miss; a guess near the person can only score higher).

Coordinates are map coordinates: cell ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``.
"""

from __future__ import annotations

import math

import numpy as np

SMOOTHING_RADIUS_SIGMAS = 3.0
"""The smoothing kernel is truncated at this many sigmas."""

MAX_SUBCELL_OFFSET = 0.5
"""Sub-cell refinement moves a peak by at most this many cells along each axis."""

FILL_MARGIN_FRACTION = 0.25
"""A missing keypoint is searched in the box of the person's found keypoints, grown on every
side by this fraction of the box's longer side (plus :data:`FILL_MARGIN_CELLS`)."""

FILL_MARGIN_CELLS = 1.0
"""Fixed part of the search margin, in cells (a person of one or two keypoints has a tiny box)."""


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian smoothing over H and W, mirrored at the border.

    Args:
        maps: (K, H, W) float maps (not modified).
        sigma: Gaussian sigma in cells (> 0).

    Returns:
        (K, H, W) float32 smoothed maps; the kernel is truncated at ``SMOOTHING_RADIUS_SIGMAS``.
    """
    radius = max(1, math.ceil(SMOOTHING_RADIUS_SIGMAS * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    for axis in (1, 2):
        size = maps.shape[axis]
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.moveaxis(np.pad(maps, pad, mode="symmetric"), axis, 0)
        maps = np.moveaxis(sum(w * padded[o:o + size] for o, w in enumerate(kernel)), 0, axis)
    return np.asarray(maps, np.float32)


def subcell_offset(before: np.ndarray, centre: np.ndarray, after: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Sub-cell peak offset: vertex of the parabola through (-1, log before), (0, log centre), (1, log after).

    Args:
        before: (...) float positive scores one cell before the peak along the axis.
        centre: (...) float positive scores at the peak.
        after: (...) float positive scores one cell after the peak.
        inside: (...) bool, False where a neighbour is missing (map border): offset 0 there.

    Returns:
        (...) float64 offsets in cells, within +-``MAX_SUBCELL_OFFSET``; 0 where not ``inside``, a
        score is not positive or the parabola does not open downwards (used by the PAF parser and
        Mask R-CNN keypoint decoding).
    """
    valid = inside & (before > 0) & (centre > 0) & (after > 0)
    logs = [np.log(np.where(valid, v, 1.0).astype(np.float64)) for v in (before, centre, after)]
    curvature = logs[0] - 2.0 * logs[1] + logs[2]
    valid &= curvature < 0
    offset = 0.5 * (logs[0] - logs[2]) / np.where(valid, curvature, -1.0)
    return np.clip(np.where(valid, offset, 0.0), -MAX_SUBCELL_OFFSET, MAX_SUBCELL_OFFSET)


def refined_xy(maps: np.ndarray, types: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sub-cell ``[x, y]`` map coordinates of cells ``(types, rows, cols)`` of (K, H, W) ``maps``.

    Returns:
        (P, 2) float64: the cell centre ``(col + 0.5, row + 0.5)`` moved by :func:`subcell_offset`
        along x and y (0 on the map border).
    """
    _, height, width = maps.shape
    left, right = np.maximum(cols - 1, 0), np.minimum(cols + 1, width - 1)
    up, down = np.maximum(rows - 1, 0), np.minimum(rows + 1, height - 1)
    centre = maps[types, rows, cols]
    dx = subcell_offset(maps[types, rows, left], centre, maps[types, rows, right], (cols > 0) & (cols < width - 1))
    dy = subcell_offset(maps[types, up, cols], centre, maps[types, down, cols], (rows > 0) & (rows < height - 1))
    return np.stack([cols + 0.5 + dx, rows + 0.5 + dy], axis=1)


def fill_missing_keypoints(keypoints: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Fills each person's absent keypoints from the heatmaps near that person.

    A keypoint k absent from person n (score 0) takes the highest cell of map k inside the box of
    n's found keypoints grown by ``FILL_MARGIN_FRACTION`` of its longer side plus
    ``FILL_MARGIN_CELLS`` (clipped to the map), refined to sub-cell precision; its score is that
    map value. It stays absent where that value is not positive.

    Args:
        keypoints: (N, 17, 3) float32 ``[x, y, score]`` in map coordinates, score 0 = absent
            (not modified).
        maps: (17, H, W) float32 keypoint maps, as used to find the peaks.

    Returns:
        (N, 17, 3) float32 keypoints: found ones unchanged, absent ones filled where possible.
    """
    out = np.array(keypoints, np.float32, copy=True)
    _, height, width = maps.shape
    for person in out:
        found = person[:, 2] > 0
        missing = np.flatnonzero(~found)
        if not found.any() or not missing.size:
            continue
        low, high = person[found, :2].min(axis=0), person[found, :2].max(axis=0)
        margin = FILL_MARGIN_FRACTION * float((high - low).max()) + FILL_MARGIN_CELLS
        col0, row0 = (max(0, int(math.floor(v - margin))) for v in low)
        col1 = min(width, int(math.ceil(high[0] + margin)))
        row1 = min(height, int(math.ceil(high[1] + margin)))
        window = maps[missing, row0:row1, col0:col1].reshape(len(missing), -1)
        best = window.argmax(axis=1)
        rows, cols = row0 + best // (col1 - col0), col0 + best % (col1 - col0)
        values = maps[missing, rows, cols]
        positive = values > 0
        xy = refined_xy(maps, missing, rows, cols)
        person[missing[positive], :2] = xy[positive]
        person[missing[positive], 2] = values[positive]
    return out
