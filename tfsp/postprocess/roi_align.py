"""RoIAlign for two-stage heads at inference (numpy only, device-safe).

Stage 1 of Mask R-CNN ends at the FPN feature maps; numpy picks each proposal's level
(:func:`assign_fpn_levels`), cuts a fixed ``s x s`` feature patch with :func:`roi_align` (or both
at once with :func:`multilevel_roi_align`) and feeds the patches to the next graph. Training cuts
the same patches with TensorFlow (``tfsp.data.roi_align_tf``); a parity test holds the two within
``TF_PARITY_ATOL``.

Convention (stated once, shared with the TF twin; Detectron2's ``ROIAlignV2``, ``aligned=True``):

* Boxes are ``[x0, y0, x1, y1]`` in continuous FEATURE-map coordinates: cell (row i, column j)
  covers ``[j, j + 1) x [i, i + 1)`` and its value sits at its centre ``(j + 0.5, i + 0.5)``.
  There is no "+1" and no minimum size: an inverted box counts as a zero-size box at
  ``(x0, y0)``.
* The box is cut into ``s x s`` equal bins; bin ``(p, q)`` is the mean of ``r x r`` sample points
  (``r`` = ``sampling_ratio``, fixed, not adaptive) at
  ``x = x0 + (q + (kx + 0.5) / r) * (x1 - x0) / s`` (``y`` alike with ``p``, ``ky``), for
  ``kx, ky`` in ``0 .. r - 1``.
* A sample is read bilinearly between the four nearest cell centres. In cell-centre index space
  ``u = x - 0.5``: a sample with ``u < -1`` or ``u > W`` (over half a pixel outside the map:
  ``x < -0.5`` or ``x > W + 0.5``) contributes 0 (it still counts in the mean); otherwise ``u`` is
  clamped to ``[0, W - 1]``, so within half a pixel outside the map the edge cell is replicated.
  Rows alike with ``H``. This is Detectron2's (and Caffe2's) ``bilinear_interpolate``.

FPN level assignment (Lin et al. 2017, eq. 1): ``k = floor(k0 + log2(sqrt(w * h) / 224))``, clamped
to ``[min_level, max_level]``. It is evaluated without a logarithm, as
``k = min_level + #{m in (min_level, max_level] : w * h >= (224 * 2 ** (m - k0)) ** 2}`` on float32
areas; the thresholds are exact in float32, so numpy and TF agree bit for bit and a 112 px box is
level 3 exactly. Level ``l`` has stride ``2 ** l`` image pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tfsp.postprocess.boxes import box_list_xyxy

DEFAULT_SAMPLING_RATIO = 2
"""Sample points per bin side (Detectron2's Mask R-CNN default ``POOLER_SAMPLING_RATIO``)."""

PIXEL_CENTRE = 0.5
"""Offset of a cell's value from its top-left corner, in cells (the "aligned" half-pixel shift)."""

ZERO_BEYOND_CELLS = 1.0
"""A sample more than this many cells beyond the outermost cell centre (over half a pixel outside
the map) contributes 0; nearer ones are clamped to the edge cell (Detectron2's ``y < -1``)."""

CANONICAL_BOX_SIZE_PX = 224
"""FPN eq. 1: the ImageNet pre-training size, in image pixels, mapped to :data:`CANONICAL_LEVEL`."""

CANONICAL_LEVEL = 4
"""FPN eq. 1: ``k0``, the level of a ``224 x 224`` box."""


def check_roi_sizes(output_size: int, sampling_ratio: int) -> None:
    """Raises ``ValueError`` unless both are positive ints (bins per side, samples per bin side)."""
    for name, value in (("output_size", output_size), ("sampling_ratio", sampling_ratio)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def level_area_thresholds(min_level: int, max_level: int) -> np.ndarray:
    """Smallest box area of each level above ``min_level`` (FPN eq. 1 without the logarithm).

    Args:
        min_level: lowest pyramid level.
        max_level: highest pyramid level, ``>= min_level``.

    Returns:
        (max_level - min_level,) float32 areas in image pixels squared: entry ``m - min_level - 1``
        is ``(224 * 2 ** (m - 4)) ** 2``, exact in float32.
    """
    if max_level < min_level:
        raise ValueError(f"max_level ({max_level}) must be >= min_level ({min_level})")
    sides = [CANONICAL_BOX_SIZE_PX * 2.0 ** (m - CANONICAL_LEVEL) for m in range(min_level + 1, max_level + 1)]
    return np.array([side * side for side in sides], np.float32)


def assign_fpn_levels(boxes_xyxy: np.ndarray, min_level: int, max_level: int) -> np.ndarray:
    """FPN level of each box (Lin et al. 2017, eq. 1; module docstring).

    Args:
        boxes_xyxy: ``[..., 4]`` float32 ``[x0, y0, x1, y1]`` in IMAGE pixels.
        min_level: lowest pyramid level (tiny and zero-area boxes go here).
        max_level: highest pyramid level (huge boxes go here).

    Returns:
        ``[...]`` int32 levels in ``[min_level, max_level]``.
    """
    boxes = np.asarray(boxes_xyxy, np.float32)
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [..., 4], got {boxes.shape}")
    thresholds = level_area_thresholds(min_level, max_level)
    zero = np.float32(0.0)
    area = np.maximum(boxes[..., 2] - boxes[..., 0], zero) * np.maximum(boxes[..., 3] - boxes[..., 1], zero)
    steps = np.sum(area[..., None] >= thresholds, axis=-1)
    return (min_level + steps).astype(np.int32)


def _sample_axis(low: np.ndarray, high: np.ndarray, output_size: int, offset: float, extent: int) -> tuple:
    """Neighbour indices and weights of one sample offset along one axis.

    Args:
        low, high: (N,) float32 box edges in feature coordinates.
        output_size: bins along the axis.
        offset: ``(k + 0.5) / r``, the sample's position inside its bin, in bins.
        extent: map size along the axis (H or W), in cells.

    Returns:
        ``(index_lo, index_hi, weight_lo, weight_hi)``, each (N, output_size):
        ``value = v[index_lo] * weight_lo + v[index_hi] * weight_hi``; both weights are 0 for
        samples beyond :data:`ZERO_BEYOND_CELLS`.
    """
    start = low - np.float32(PIXEL_CENTRE)
    step = np.maximum(high - low, np.float32(0.0)) / np.float32(output_size)
    grid = np.arange(output_size, dtype=np.float32) + np.float32(offset)
    points = start[:, None] + grid[None, :] * step[:, None]
    last = np.float32(extent - 1)
    valid = (points >= np.float32(-ZERO_BEYOND_CELLS)) & (points <= last + np.float32(ZERO_BEYOND_CELLS))
    clamped = np.minimum(np.maximum(points, np.float32(0.0)), last)
    floor = np.floor(clamped)
    frac = clamped - floor
    index_lo = floor.astype(np.int64)
    index_hi = np.minimum(floor + np.float32(1.0), last).astype(np.int64)
    zero = np.float32(0.0)
    weight_lo = np.where(valid, np.float32(1.0) - frac, zero)
    weight_hi = np.where(valid, frac, zero)
    return index_lo, index_hi, weight_lo, weight_hi


def roi_align(features: np.ndarray, boxes_xyxy: np.ndarray, output_size: int,
              sampling_ratio: int = DEFAULT_SAMPLING_RATIO) -> np.ndarray:
    """RoIAlign of boxes on one feature map (aligned, bilinear; module docstring).

    Args:
        features: (H, W, C) float32 feature map, H, W >= 1.
        boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in FEATURE-map coordinates (cells,
            continuous; cell (i, j) centred at ``(j + 0.5, i + 0.5)``).
        output_size: s, bins per side of the output patch.
        sampling_ratio: r, sample points per bin side (``r * r`` per bin).

    Returns:
        (N, s, s, C) float32; entry ``[n, p, q]`` is bin row p, column q of box n (rows along y).
    """
    check_roi_sizes(output_size, sampling_ratio)
    values = np.asarray(features, np.float32)
    if values.ndim != 3 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"features must have shape (H, W, C) with H, W >= 1, got {values.shape}")
    boxes = box_list_xyxy(boxes_xyxy)
    height, width = values.shape[:2]
    total = np.zeros((boxes.shape[0], output_size, output_size, values.shape[2]), np.float32)
    for ky in range(sampling_ratio):
        rows = _sample_axis(boxes[:, 1], boxes[:, 3], output_size, (ky + 0.5) / sampling_ratio, height)
        rows_lo, rows_hi = rows[0][:, :, None], rows[1][:, :, None]
        weight_top, weight_bottom = rows[2][:, :, None, None], rows[3][:, :, None, None]
        for kx in range(sampling_ratio):
            cols = _sample_axis(boxes[:, 0], boxes[:, 2], output_size, (kx + 0.5) / sampling_ratio, width)
            cols_lo, cols_hi = cols[0][:, None, :], cols[1][:, None, :]
            weight_left, weight_right = cols[2][:, None, :, None], cols[3][:, None, :, None]
            top = values[rows_lo, cols_lo] * weight_left + values[rows_lo, cols_hi] * weight_right
            bottom = values[rows_hi, cols_lo] * weight_left + values[rows_hi, cols_hi] * weight_right
            total = total + (top * weight_top + bottom * weight_bottom)
    return total / np.float32(sampling_ratio * sampling_ratio)


def check_levels(levels) -> tuple[int, ...]:
    """Validates pyramid levels: distinct consecutive ints, ascending after sorting.

    Args:
        levels: iterable of int pyramid levels (level l has stride ``2 ** l``).

    Returns:
        The levels sorted ascending.
    """
    ordered = tuple(sorted(int(level) for level in levels))
    if not ordered or ordered != tuple(range(ordered[0], ordered[0] + len(ordered))):
        raise ValueError(f"levels must be distinct consecutive ints, got {tuple(levels)!r}")
    return ordered


def multilevel_roi_align(features_by_level: Mapping[int, np.ndarray], boxes_xyxy: np.ndarray, output_size: int,
                         sampling_ratio: int = DEFAULT_SAMPLING_RATIO) -> np.ndarray:
    """RoIAlign of each box on its FPN level (Lin et al. 2017), in input order.

    Each box gets :func:`assign_fpn_levels` over the given levels, is scaled to that level's
    feature coordinates by ``1 / 2 ** level`` (exact in float32) and is RoI-aligned there.

    Args:
        features_by_level: level l -> (H_l, W_l, C) float32 map of stride ``2 ** l`` image
            pixels; consecutive levels, one C for all.
        boxes_xyxy: (N, 4) float32 ``[x0, y0, x1, y1]`` in IMAGE pixels.
        output_size: s, bins per side.
        sampling_ratio: r, sample points per bin side.

    Returns:
        (N, s, s, C) float32; row n belongs to box n.
    """
    levels = check_levels(features_by_level.keys())
    maps = {level: np.asarray(features_by_level[level], np.float32) for level in levels}
    channels = {values.shape[-1] for values in maps.values() if values.ndim == 3}
    if len(channels) != 1 or any(values.ndim != 3 for values in maps.values()):
        raise ValueError(f"every level must be (H, W, C) with one C, got {[v.shape for v in maps.values()]}")
    check_roi_sizes(output_size, sampling_ratio)
    boxes = box_list_xyxy(boxes_xyxy)
    assigned = assign_fpn_levels(boxes, levels[0], levels[-1])
    result = np.zeros((boxes.shape[0], output_size, output_size, channels.pop()), np.float32)
    for level in levels:
        index = np.flatnonzero(assigned == level)
        if index.size:
            scaled = boxes[index] * np.float32(2.0 ** -level)
            result[index] = roi_align(maps[level], scaled, output_size, sampling_ratio)
    return result
